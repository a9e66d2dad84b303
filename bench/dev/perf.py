"""Performance benchmark of ELTA's modules: ratios measured side by side in one run.

    python -m bench.dev.perf            # full sizes, about 3 minutes on 2 CPU cores
    python -m bench.dev.perf --quick    # reduced sizes, under a minute

Everything runs on the CPU with one torch thread, as each stage of the harness does
(bench.run.stages.STAGE_THREADS), and is seeded. Four measurements, each against a reference:

1. Training step. One full step of the `cpu` profile (Swin V2 from the registry, batch 32 of
   48x48 images, random 10-bin targets): bench.train.training_loss + zero_grad + backward +
   Adam step. The baseline (MethodOptions()) against TFA + FLSA (feature-level TFA with the
   default pairs, FLSA weight 1), FDS (calibrating, with one epoch's statistics in place) and
   RankSim, each on its own copy of the same model, the order reversed every other round
   after a warm-up; medians and the overhead of TFA + FLSA (goal <= 5%).

2. APDS search. elta.apds.grid_search (one vectorised pass over the grid) against a row-wise
   pandas search with the official code's structure (`ELTA 1.0/dataset.py`: temperature_sharping
   scales the logits DataFrame and applies a softmax row by row, pick_pseudo_labels takes each
   row's top-1 with a second row-wise apply and filters the candidates per threshold), with our
   semantics: s_bar is the mean predicted score, select max prob >= t, MAE of the unsharpened
   predictions, at least `min_selected` picks, ties to the first cell (beta-major). The
   reference sharpens once per beta and thresholds per t; the official code re-sharpens for
   every cell, which would be n_thresholds times slower still. Both in float64, so that their
   grids can be compared exactly; ours is also timed in float32, the harness's dtype.
   Reports both times, the speed-up (goal >= 100x) and both chosen (beta, t).

3. TFA pair sampling. elta.tfa.sample_pairs against a NumPy loop that draws one pair at a time
   like the official `get_mixup_pairs` (`ELTA 1.0/mixup.py`), with our equations: first members
   drawn sequentially without replacement, each draw proportional to the remaining P(i) (eq. 2);
   partners by softmax over tau2 / max(|s_i - s_k|, TIE_EPS), k != i (eq. 3); lam of eq. 4.
   Same sampling distribution: total-variation distances between the two samplers' empirical
   first-member and (i, j) frequencies, beside the same distances between two independent
   runs of sample_pairs (the noise level); their mean lam with its standard error over calls.
   Then the time per call of each, in interleaved blocks.

4. The DIR methods (bench/dev/perf_dir.py): the FDS statistics update and the RankSim
   regulariser against the official code's per-bucket and per-row loops.

With --device (cuda on a GPU machine): only the paper profile's training step against the bare
model on that device (bench/dev/paper_step.py).
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from baselines import create_model, model_config
from bench.data.types import Split
from bench.dev import perf_dir
from bench.profiles import get_profile
from bench.run.grid import RANKSIM_GAMMA_DEFAULT
from bench.run.stages import STAGE_THREADS
from bench.train.dir_terms import dir_terms
from bench.train.loop import training_loss
from bench.train.methods import MethodOptions
from elta import apds, tfa
from elta.apds import expected_score
from iaa_common import NUM_BINS

BIN_COLUMNS = [f"bin{k}" for k in range(1, NUM_BINS + 1)]
TAU1, TAU2 = MethodOptions().tau1, MethodOptions().tau2


@dataclass(frozen=True)
class Sizes:
    step_warmup: int  # A/B rounds not timed
    step_rounds: int  # timed A/B rounds
    candidates: int  # APDS candidate set
    grid: int  # betas and thresholds per axis
    search_repeats: int  # timed calls of grid_search
    pair_batch: int
    n_pairs: int
    pair_draws: int  # calls of each sampler for the distribution check
    pair_timing_calls: int  # calls per timed block (5 blocks per sampler)


FULL = Sizes(3, 20, 20_000, 20, 5, 48, 12, 20_000, 1_000)
QUICK = Sizes(2, 6, 2_000, 20, 3, 48, 12, 3_000, 200)


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# ---- 1. training step -------------------------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    times: dict[str, list[float]]  # configuration -> seconds per timed step

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])


STEP_CONFIGS = {
    "baseline": MethodOptions(),
    "TFA + FLSA": MethodOptions(tfa=True, flsa_weight=1.0),
    "FDS": MethodOptions(fds=True),
    "RankSim": MethodOptions(ranksim_weight=RANKSIM_GAMMA_DEFAULT),
}
GOALS = {"TFA + FLSA": 5, "FDS": 5, "RankSim": 10}  # overhead over the baseline, percent


def _random_batch(batch: int, img_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, img_size, img_size, generator=g)
    targets = torch.softmax(2.0 * torch.randn(batch, NUM_BINS, generator=g), dim=-1)
    return x, targets


def _step_fn(
    model: torch.nn.Module,
    opts: MethodOptions,
    lr: float,
    x: torch.Tensor,
    targets: torch.Tensor,
    seed: int,
) -> Callable[[], None]:
    """One full training step of `model` (with its own Adam and TFA generator) per call. With
    FDS, its statistics are in place (one epoch folded in), so that each step calibrates."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    scores = expected_score(targets)
    train = Split(np.zeros((len(x), 1, 1, 3), np.uint8), scores.numpy(), None, [""] * len(x))
    terms = dir_terms(opts, train, model, torch.device("cpu"))
    if terms is not None and terms.fds is not None:
        with torch.no_grad():
            terms.fds.accumulate(model.forward_features(x), terms.bins(scores))
        terms.end_epoch()
        terms.start_epoch(opts.fds_start_smooth)

    def step() -> None:
        loss = training_loss(model, x, targets, 0, opts, generator, None, terms)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure_step(sizes: Sizes, seed: int = 0) -> StepResult:
    """Interleaved step times of the baseline and TFA + FLSA on the cpu profile."""
    profile = get_profile("cpu")
    x, targets = _random_batch(profile.batch_size, model_config("swinv2", "cpu")["img_size"], seed)
    torch.manual_seed(seed)
    model = create_model("swinv2", "cpu", None)
    runs = {
        name: _step_fn(copy.deepcopy(model), opts, profile.lr, x, targets, seed)
        for name, opts in STEP_CONFIGS.items()
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(sizes.step_warmup + sizes.step_rounds):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in order:
            elapsed = _seconds(runs[name])
            if round_ >= sizes.step_warmup:
                times[name].append(elapsed)
    return StepResult(times)


# ---- 2. APDS (beta, t) search -----------------------------------------------------------------


def apds_candidates(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (n, 10), predicted scores, true scores) of a plausible, long-tail-biased model.

    Each candidate's logits are a parabola over the bins (a discretised Gaussian) of random
    sharpness plus noise, centred on its true score shrunk towards the mean, with an error that
    shrinks as the prediction gets sharper. Top-1 probabilities spread from about 0.25 to 0.7.
    """
    rng = np.random.default_rng(seed)
    true = np.clip(rng.normal(5.5, 1.3, n), 1.0, 10.0)
    sharpness = rng.uniform(0.2, 3.0, n)
    centre = 5.5 + 0.7 * (true - 5.5) + rng.normal(0.0, 1.0, n) * 0.6 / np.sqrt(sharpness)
    bins = np.arange(1, NUM_BINS + 1)
    logits = -0.5 * sharpness[:, None] * (bins - centre[:, None]) ** 2
    logits += rng.normal(0.0, 0.3, (n, NUM_BINS))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    pred = (probs / probs.sum(1, keepdims=True)) @ bins
    return logits, pred, true


def _softmax_row(row: pd.Series) -> pd.Series:
    e = np.exp(row - row.max())
    return e / e.sum()


def row_wise_confidence(candidates: pd.DataFrame, beta: float) -> pd.Series:
    """Eq. 8's top-1 probability, row by row as the official temperature_sharping: logits
    times 1 / tau_i = exp(beta |s_hat_i - s_bar|), a softmax per row, then a max per row."""
    deviation = (candidates["pred"] - candidates["pred"].mean()).abs()
    scaled = candidates[BIN_COLUMNS].mul(np.exp(beta * deviation), axis=0)
    sharpened = scaled.apply(_softmax_row, axis=1)
    return sharpened.apply(lambda row: row.max(), axis=1)


def pandas_grid_search(
    logits: np.ndarray,
    pred: np.ndarray,
    true: np.ndarray,
    betas: list[float],
    thresholds: list[float],
    min_selected: int,
) -> pd.DataFrame:
    """The reference search: one row per (beta, threshold) with mae (NaN below min_selected)
    and count, in grid order (beta-major), as elta.apds.GridResult.grid."""
    candidates = pd.DataFrame(logits, columns=BIN_COLUMNS)
    candidates["pred"], candidates["true"] = pred, true
    rows = []
    for beta in betas:
        confidence = row_wise_confidence(candidates, beta)
        for threshold in thresholds:
            picked = candidates[confidence >= threshold]
            mae = (picked["pred"] - picked["true"]).abs().mean()
            valid = len(picked) >= min_selected
            rows.append((beta, threshold, mae if valid else np.nan, len(picked)))
    return pd.DataFrame(rows, columns=["beta", "threshold", "mae", "count"])


def pandas_best(grid: pd.DataFrame) -> tuple[float, float]:
    """(beta, t) of the lowest MAE; idxmin returns the first of equal minima (grid order)."""
    if grid["mae"].isna().all():
        raise ValueError("no (beta, t) selects enough candidates")
    row = grid.loc[grid["mae"].idxmin()]
    return float(row["beta"]), float(row["threshold"])


@dataclass(frozen=True)
class SearchResult:
    n: int
    grid_shape: tuple[int, int]
    ours_s: float  # median seconds, float64
    ours_f32_s: float
    pandas_s: float
    ours_best: tuple[float, float]
    pandas_best: tuple[float, float]
    max_mae_diff: float
    count_mismatches: int


def _time_ours(
    inputs: tuple[torch.Tensor, ...], grid: tuple, min_selected: int, repeats: int
) -> float:
    """Median seconds of elta.apds.grid_search after one warm-up call."""
    search = functools.partial(apds.grid_search, *inputs, *grid, min_selected)
    search()
    return statistics.median(_seconds(search) for _ in range(repeats))


def measure_search(sizes: Sizes, seed: int = 0, min_selected: int = 10) -> SearchResult:
    """Both searches on the same candidates; the pandas one is timed once (it is slow)."""
    logits, pred, true = apds_candidates(sizes.candidates, seed)
    betas = np.linspace(0.25, 3.0, sizes.grid).tolist()
    thresholds = np.linspace(0.2, 0.95, sizes.grid).tolist()
    inputs64 = tuple(torch.from_numpy(a) for a in (logits, pred, true))
    inputs32 = tuple(a.float() for a in inputs64)
    ours = apds.grid_search(*inputs64, betas, thresholds, min_selected)

    start = time.perf_counter()
    reference = pandas_grid_search(logits, pred, true, betas, thresholds, min_selected)
    pandas_s = time.perf_counter() - start

    mae_diff = (ours.grid["mae"] - reference["mae"]).abs().max()
    return SearchResult(
        n=sizes.candidates,
        grid_shape=(len(betas), len(thresholds)),
        ours_s=_time_ours(inputs64, (betas, thresholds), min_selected, sizes.search_repeats),
        ours_f32_s=_time_ours(inputs32, (betas, thresholds), min_selected, sizes.search_repeats),
        pandas_s=pandas_s,
        ours_best=(ours.beta, ours.threshold),
        pandas_best=pandas_best(reference),
        max_mae_diff=float(mae_diff),
        count_mismatches=int((ours.grid["count"] != reference["count"]).sum()),
    )


# ---- 3. TFA pair sampling ---------------------------------------------------------------------


def loop_sample_pairs(
    scores: np.ndarray, n_pairs: int, tau1: float, tau2: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eqs. 2-4 one pair at a time, as the official get_mixup_pairs, with our semantics.

    Returns (i, j, lam) like elta.tfa.sample_pairs.
    """
    scores = np.asarray(scores, dtype=np.float64)
    batch = len(scores)
    p_first = _softmax(np.abs(scores - scores.mean()) / tau1)  # eq. 2
    remaining = p_first.copy()
    first, partner, lam = [], [], []
    for _ in range(min(n_pairs, batch)):
        i = rng.choice(batch, p=remaining / remaining.sum())
        remaining[i] = 0.0  # without replacement
        partner_logits = tau2 / np.maximum(np.abs(scores[i] - scores), tfa.TIE_EPS)
        partner_logits[i] = -np.inf  # k != i
        j = rng.choice(batch, p=_softmax(partner_logits))  # eq. 3
        first.append(i)
        partner.append(j)
        lam.append(p_first[i] / (p_first[i] + p_first[j]))  # eq. 4
    return np.array(first), np.array(partner), np.array(lam)


def torch_sampler(scores: np.ndarray, seed: int) -> Callable[[int, float, float], tuple]:
    """elta.tfa.sample_pairs on fixed scores with its own seeded generator, NumPy out."""
    s = torch.as_tensor(scores, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)

    def draw(n_pairs: int, tau1: float, tau2: float) -> tuple[np.ndarray, ...]:
        return tuple(t.numpy() for t in tfa.sample_pairs(s, n_pairs, tau1, tau2, g))

    return draw


def loop_sampler(scores: np.ndarray, seed: int) -> Callable[[int, float, float], tuple]:
    rng = np.random.default_rng(seed)
    return lambda n_pairs, tau1, tau2: loop_sample_pairs(scores, n_pairs, tau1, tau2, rng)


@dataclass(frozen=True)
class PairStats:
    first: np.ndarray  # (B,) share of pairs whose first member is k
    joint: np.ndarray  # (B, B) share of pairs (i, j)
    call_lam: np.ndarray  # (calls,) mean lam of each call; calls are independent

    @property
    def mean_lam(self) -> float:
        return float(self.call_lam.mean())

    @property
    def lam_se(self) -> float:
        return float(self.call_lam.std(ddof=1) / np.sqrt(len(self.call_lam)))


def pair_stats(draw: Callable, sizes: Sizes) -> PairStats:
    """Empirical distribution of `sizes.pair_draws` calls (tau1, tau2: our defaults)."""
    joint = np.zeros((sizes.pair_batch, sizes.pair_batch))
    call_lam = np.empty(sizes.pair_draws)
    for call in range(sizes.pair_draws):
        i, j, lam = draw(sizes.n_pairs, TAU1, TAU2)
        np.add.at(joint, (i, j), 1.0)
        call_lam[call] = lam.mean()
    joint /= joint.sum()
    return PairStats(joint.sum(1), joint, call_lam)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def tie_scores(batch: int, seed: int) -> np.ndarray:
    """Label scores on a 0.1 grid (many exact ties) with tied and untied extremes."""
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(5.5, 1.0, batch), 1)
    scores[:4] = [1.3, 9.4, 9.4, 2.0]
    return scores.astype(np.float32)


@dataclass(frozen=True)
class PairResult:
    scores: np.ndarray
    ours: PairStats
    ours_again: PairStats  # an independent run of sample_pairs: the noise level
    loop: PairStats
    ours_call_s: float
    loop_call_s: float


def _seconds_per_call(draw: Callable, sizes: Sizes) -> float:
    start = time.perf_counter()
    for _ in range(sizes.pair_timing_calls):
        draw(sizes.n_pairs, TAU1, TAU2)
    return (time.perf_counter() - start) / sizes.pair_timing_calls


def _time_per_call(samplers: dict[str, Callable], sizes: Sizes) -> dict[str, float]:
    """Median over 5 interleaved blocks of seconds per call."""
    blocks: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(5):
        for name, draw in samplers.items():
            blocks[name].append(_seconds_per_call(draw, sizes))
    return {name: statistics.median(b) for name, b in blocks.items()}


def measure_pairs(sizes: Sizes, seed: int = 0) -> PairResult:
    scores = tie_scores(sizes.pair_batch, seed)
    per_call = _time_per_call(
        {"ours": torch_sampler(scores, seed + 10), "loop": loop_sampler(scores, seed + 10)}, sizes
    )
    return PairResult(
        scores=scores,
        ours=pair_stats(torch_sampler(scores, seed + 1), sizes),
        ours_again=pair_stats(torch_sampler(scores, seed + 2), sizes),
        loop=pair_stats(loop_sampler(scores, seed + 3), sizes),
        ours_call_s=per_call["ours"],
        loop_call_s=per_call["loop"],
    )


# ---- report -----------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )


def _cell(best: tuple[float, float]) -> str:
    return f"beta={best[0]:.4f}, t={best[1]:.4f}"


def report_step(r: StepResult, sizes: Sizes) -> str:
    base = r.median("baseline")
    rows = []
    for name, t in r.times.items():
        overhead = f"{100 * (r.median(name) / base - 1):+.1f}%" if name in GOALS else ""
        goal = f"<= {GOALS[name]}%" if name in GOALS else ""
        ms = [f"{1e3 * value:.1f}" for value in (r.median(name), min(t), max(t))]
        rows.append([name, *ms, overhead, goal])
    return "\n".join(
        [
            "1. Training step, cpu profile (swinv2, batch 32, 48x48, 10-bin targets): "
            "training_loss + zero_grad + backward + Adam",
            f"   torch threads: {torch.get_num_threads()} (bench.run.stages.STAGE_THREADS); "
            f"{sizes.step_warmup} warm-up + {sizes.step_rounds} timed rounds, the order "
            "reversed every other round",
            f"   TFA: {STEP_CONFIGS['TFA + FLSA'].tfa_pairs} pairs, feature level; FLSA weight "
            f"1.0; FDS: calibrating (statistics of one epoch in place), statistics accumulated "
            f"each step; RankSim: gamma {RANKSIM_GAMMA_DEFAULT:g}",
            _table(["config", "median ms", "min ms", "max ms", "overhead", "goal"], rows),
        ]
    )


def report_search(r: SearchResult) -> str:
    rows = [
        ["elta.apds.grid_search, float64", f"{r.ours_s:.3f}", "1"],
        ["elta.apds.grid_search, float32", f"{r.ours_f32_s:.3f}", ""],
        ["pandas row-wise reference, float64", f"{r.pandas_s:.1f}", f"{r.pandas_s / r.ours_s:.0f}"],
    ]
    same = "same" if r.ours_best == r.pandas_best else "DIFFERENT"
    return "\n".join(
        [
            f"2. APDS (beta, t) search: {r.n:,} candidates x {NUM_BINS} bins x "
            f"{r.grid_shape[0]} x {r.grid_shape[1]} grid, min_selected 10",
            _table(["implementation", "seconds", "x ours (f64)"], rows),
            f"speed-up {r.pandas_s / r.ours_s:.0f}x over pandas, float64 vs float64 (goal >= 100x)",
            f"chosen: ours {_cell(r.ours_best)}; pandas {_cell(r.pandas_best)} -> {same}",
            f"grids: max |MAE difference| {r.max_mae_diff:.2e}, "
            f"cells with different counts: {r.count_mismatches}",
        ]
    )


def _z(a: PairStats, b: PairStats) -> float:
    """Difference of mean lam in standard errors of the difference."""
    return (a.mean_lam - b.mean_lam) / float(np.hypot(a.lam_se, b.lam_se))


def _tv_row(name: str, r: PairResult, field: str) -> list[str]:
    ours, loop, again = (getattr(s, field) for s in (r.ours, r.loop, r.ours_again))
    return [name, f"{total_variation(ours, loop):.4f}", f"{total_variation(ours, again):.4f}"]


def _lam_row(name: str, s: PairStats, run1: PairStats) -> list[str]:
    z = "" if s is run1 else f"{_z(s, run1):+.2f}"
    return [name, f"{s.mean_lam:.5f}", f"{s.lam_se:.5f}", z]


def report_pairs(r: PairResult, sizes: Sizes) -> str:
    n_tied = len(r.scores) - len(np.unique(r.scores))
    tv_rows = [
        _tv_row("first-member frequency", r, "first"),
        _tv_row("(i, j) joint frequency", r, "joint"),
    ]
    lam_rows = [
        _lam_row("sample_pairs, run 1", r.ours, r.ours),
        _lam_row("sample_pairs, run 2", r.ours_again, r.ours),
        _lam_row("NumPy loop", r.loop, r.ours),
    ]
    ratio = r.loop_call_s / r.ours_call_s
    time_rows = [
        ["elta.tfa.sample_pairs", f"{1e6 * r.ours_call_s:.0f}", "1"],
        ["NumPy per-pair loop", f"{1e6 * r.loop_call_s:.0f}", f"{ratio:.1f}"],
    ]
    return "\n".join(
        [
            f"3. TFA pair sampling: batch {sizes.pair_batch}, {sizes.n_pairs} pairs, "
            f"tau1 {TAU1}, tau2 {TAU2}; scores {r.scores.min():.1f}..{r.scores.max():.1f}, "
            f"{n_tied} of them tied with an earlier one",
            f"   {sizes.pair_draws:,} calls ({sizes.pair_draws * sizes.n_pairs:,} pairs) per run; "
            "run 1 of sample_pairs against the loop and against run 2 (the noise level)",
            _table(["statistic", "TV ours vs loop", "TV ours vs ours (noise)"], tv_rows),
            _table(["run", "mean lam", "s.e. over calls", "z vs run 1"], lam_rows),
            f"   time per call, median of 5 interleaved blocks of {sizes.pair_timing_calls} calls:",
            _table(["sampler", "us per call", "x ours"], time_rows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dev.perf", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes, under a minute")
    parser.add_argument(
        "--device", help="only the paper profile's step on this device (bench/dev/paper_step.py)"
    )
    parser.add_argument("--tiny", action="store_true", help="with --device: the smoke config")
    args = parser.parse_args(argv)
    if args.device:
        from bench.dev import paper_step

        print(paper_step.report(paper_step.measure(args.device, args.tiny)))
        return
    sizes = QUICK if args.quick else FULL
    torch.set_num_threads(STAGE_THREADS)
    start = time.perf_counter()
    print(report_step(measure_step(sizes), sizes), flush=True)
    print("\n" + report_search(measure_search(sizes)), flush=True)
    print("\n" + report_pairs(measure_pairs(sizes), sizes), flush=True)
    dir_sizes = perf_dir.QUICK if sizes is QUICK else perf_dir.FULL
    print("\n4. " + perf_dir.report(perf_dir.measure(dir_sizes)))
    print(f"\ntotal {time.perf_counter() - start:.0f} s ({'quick' if sizes is QUICK else 'full'})")


if __name__ == "__main__":
    main()
