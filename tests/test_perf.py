"""The reference implementations of bench/dev/perf.py agree with ELTA's (no timing here)."""

import numpy as np
import pytest
import torch

from bench.dev import perf
from elta import apds

# ---- APDS: the row-wise pandas search against elta.apds.grid_search ---------------------------


def _both_searches(logits, pred, true, betas, thresholds, min_selected=10):
    ours = apds.grid_search(
        *(torch.from_numpy(a) for a in (logits, pred, true)), betas, thresholds, min_selected
    )
    reference = perf.pandas_grid_search(logits, pred, true, betas, thresholds, min_selected)
    return ours, reference


def test_pandas_search_matches_grid_search():
    logits, pred, true = perf.apds_candidates(300, seed=1)
    betas = [0.25, 0.75, 1.5, 2.25, 3.0]
    thresholds = [0.3, 0.45, 0.6, 0.75, 0.9]
    ours, reference = _both_searches(logits, pred, true, betas, thresholds)

    # The input exercises the search: selections vary, some cells fall below min_selected.
    assert reference["count"].nunique() > 10
    assert reference["mae"].isna().any()
    assert perf.pandas_best(reference) == (ours.beta, ours.threshold)
    np.testing.assert_array_equal(reference["count"], ours.grid["count"])
    np.testing.assert_allclose(reference["mae"], ours.grid["mae"], rtol=1e-12, equal_nan=True)


def test_pandas_search_ties_go_to_the_first_cell():
    logits, pred, true = perf.apds_candidates(50, seed=2)
    betas, thresholds = [2.0, 1.0], [0.05, 0.0]  # every cell selects every candidate
    ours, reference = _both_searches(logits, pred, true, betas, thresholds)
    assert perf.pandas_best(reference) == (ours.beta, ours.threshold) == (2.0, 0.05)


def test_pandas_search_without_a_valid_cell_raises():
    logits, pred, true = perf.apds_candidates(50, seed=3)
    grid = perf.pandas_grid_search(logits, pred, true, [1.0], [0.5], min_selected=51)
    with pytest.raises(ValueError):
        perf.pandas_best(grid)


# ---- TFA: the per-pair NumPy loop against elta.tfa.sample_pairs -------------------------------

SCORES = np.array([1.0, 9.0, 9.0, 5.0, 5.0, 5.5, 6.0, 4.0], dtype=np.float32)  # ties, extremes
N_PAIRS, TAU1, TAU2 = 3, 1.0, 1.0
CALLS = 6000


def _frequencies(draw) -> tuple[np.ndarray, np.ndarray]:
    """Share of calls that pick each sample as a first member; share of pairs with each partner."""
    included = np.zeros(len(SCORES))
    partners = np.zeros(len(SCORES))
    for _ in range(CALLS):
        i, j, _ = draw(N_PAIRS, TAU1, TAU2)
        assert (i != j).all()
        included[i] += 1
        np.add.at(partners, j, 1)
    return included / CALLS, partners / (CALLS * N_PAIRS)


@pytest.fixture
def one_thread():
    """One torch thread, as the stages: tiny ops with more threads crawl on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_loop_sampler_matches_sample_pairs_distribution(one_thread):
    ours_first, ours_partner = _frequencies(perf.torch_sampler(SCORES, seed=0))
    loop_first, loop_partner = _frequencies(perf.loop_sampler(SCORES, seed=0))
    # Standard errors are below 0.0065 per sampler: 0.035 is over 3.8 of the difference's.
    np.testing.assert_allclose(loop_first, ours_first, atol=0.035)
    np.testing.assert_allclose(loop_partner, ours_partner, atol=0.035)


def test_loop_sampler_lambda_is_eq4():
    i, j, lam = perf.loop_sample_pairs(SCORES, 8, 0.5, 2.0, np.random.default_rng(0))
    assert sorted(i.tolist()) == list(range(8))  # every sample once: no replacement
    deviation = np.abs(SCORES.astype(np.float64) - SCORES.mean())
    np.testing.assert_allclose(lam, 1 / (1 + np.exp(-(deviation[i] - deviation[j]) / 0.5)))


def test_model_benchmark_prints_a_row_per_model(capsys):
    from bench.dev import model_perf

    assert model_perf.main(["--quick", "--models", "swinv2,hgcn"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| swinv2", "| hgcn"]
    assert all(float(row.split(" | ")[4]) > 0 for row in rows[1:])  # images per second


def test_paper_step_measures_the_harness_against_the_bare_model_on_any_device():
    from bench.dev import paper_step

    result = paper_step.measure("cpu", tiny=True, repeats=1)
    assert result["harness_s"] > 0 and result["bare_s"] > 0
    assert result["share"] == pytest.approx(result["bare_s"] / result["harness_s"])
    assert "keeps" in paper_step.report(result) and "smoke swinv2, batch 4" in result["config"]
