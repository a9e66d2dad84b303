# Two entry points (README quickstart): `make table4` and `make test`.
# Both create the virtual environment .venv on first use (torch is a large download).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: table4 test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

table4: $(VENV)/.installed
	$(BIN)/python run_all.py --table 4

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q
