# Two entry points (README quickstart): `make table4` and `make test`; the other ablations and
# the benchmark have their own targets. All create the virtual environment .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: table4 table5 sampling figure5 perf test lint rehearse

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $@

table4: $(VENV)/.installed
	$(BIN)/python run_all.py --table 4

table5: $(VENV)/.installed
	$(BIN)/python run_all.py --table 5

sampling: $(VENV)/.installed
	$(BIN)/python run_all.py --table sampling

figure5: $(VENV)/.installed
	$(BIN)/python run_all.py --figure 5

# The paper protocol's code path on fixture data (README: Rehearsing the paper protocol), with
# the default --jobs and with Ray, each in a store of its own.
rehearse: $(VENV)/.installed
	rm -rf results-rehearsal results-rehearsal-ray
	$(BIN)/python run_all.py --table all --profile paper --rehearse --results results-rehearsal
	$(BIN)/python run_all.py --table all --profile paper --rehearse --backend ray \
		--results results-rehearsal-ray

perf: $(VENV)/.installed
	$(BIN)/python -m bench.dev.perf

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q
