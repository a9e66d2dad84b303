"""Performance references for the DIR methods (baselines/dir), timed side by side in one run.

    python -m bench.dev.perf_dir            # full sizes
    python -m bench.dev.perf_dir --quick    # reduced sizes

Two pairs, each ours against a reference written in the official code's per-item loop style:

1. FDS statistics update. `baselines.dir.fds.FDS.update` (index_add over the batch) against
   `loop_fds_update`, the official `update_running_stats` structure (`agedb-dir/fds.py`): for
   each distinct bucket, mean and variance of features[bucket == b], then that bucket's running
   update, then the official smoothing (reflect padding + conv1d). Same numbers as ours when
   every bucket is present. Default: 100 buckets, 4,096 features of dimension 1,024.
2. RankSim. `baselines.dir.ranksim.regularizer` (one sort of the whole matrix) against
   `loop_regularizer`, the official `batchwise_ranking_regularizer` structure
   (`agedb-dir/ranksim.py`): gather the representatives, then rank and score each row in a
   Python loop with a per-row blackbox ranker. Same representatives (same generator state),
   same value and gradient. Timed forward + backward. Default: batch 256, dimension 1,024,
   distinct scores (every row kept: the loop's worst case).

`measure` runs both pairs with one torch thread (the harness's stage setting), after a warm-up,
alternating the order A/B, B/A each round; it reports medians and the speed-up ratios
(reference time / ours). The tests (tests/test_perf_dir.py) check only that each reference
gives the same numbers as ours; no test times anything.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from baselines.dir import ranksim
from baselines.dir.fds import FDS

# ---- 1. FDS: the official per-bucket loop ----------------------------------------------------


@torch.no_grad()
def loop_fds_update(fds: FDS, features: torch.Tensor, bucket: torch.Tensor, epoch: int) -> None:
    """FDS.update written like the official `update_running_stats` + `_update_last_epoch_stats`
    (with our semantics: the first update of a bucket replaces its statistics, smoothing of the
    statistics just updated). Requires every bucket to have been seen (no empty-bucket rule)."""
    if epoch < fds.start_update:
        return
    features = features.float()
    for label in torch.unique(bucket):
        members = features[bucket == label]
        n = members.size(0)
        mean = torch.mean(members, 0)
        var = torch.var(members, 0, unbiased=n != 1)
        i = int(label)
        factor = fds.momentum if bool(fds.seen[i]) else 0.0
        fds.running_mean[i] = (1 - factor) * mean + factor * fds.running_mean[i]
        fds.running_var[i] = (1 - factor) * var + factor * fds.running_var[i]
        fds.seen[i] = True
    if not bool(fds.seen.all()):
        raise ValueError("loop_fds_update implements the smoothing for fully seen buckets only")
    half = (fds.window.numel() - 1) // 2
    for running, smoothed in (
        (fds.running_mean, fds.smoothed_mean),
        (fds.running_var, fds.smoothed_var),
    ):
        padded = F.pad(running.unsqueeze(1).permute(2, 1, 0), pad=(half, half), mode="reflect")
        out = F.conv1d(padded, weight=fds.window.view(1, 1, -1), padding=0)
        smoothed.copy_(out.permute(2, 1, 0).squeeze(1))


# ---- 2. RankSim: the official per-row loop ---------------------------------------------------


def _row_rank(row: torch.Tensor) -> torch.Tensor:
    """(1, K) -> normalised descending rank, the official argsort-of-argsort (stable here)."""
    order = torch.argsort(row, dim=1, descending=True, stable=True)
    return (torch.argsort(order, dim=1, stable=True) + 1).float() / row.size(1)


class RowRanker(torch.autograd.Function):
    """The official TrueRanker for one row (1, K)."""

    @staticmethod
    def forward(ctx, sequence: torch.Tensor, lambda_val: float):
        rank = _row_rank(sequence)
        ctx.lambda_val = lambda_val
        ctx.save_for_backward(sequence, rank)
        return rank

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        sequence, rank = ctx.saved_tensors
        rank_prime = _row_rank(sequence + ctx.lambda_val * grad_output)
        return -(rank - rank_prime) / ctx.lambda_val, None


def loop_regularizer(
    features: torch.Tensor,
    scores: torch.Tensor,
    interpolation_lambda: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RankSim with the official structure: gather the representatives, loop over the rows."""
    keep = ranksim.representatives(scores, generator)
    index = keep.nonzero()[:, 0]
    x = features.float()[index].reshape(len(index), -1)
    y = scores.detach().float()[index]
    unit = F.normalize(x, dim=1)
    xxt = unit @ unit.T
    loss = torch.zeros((), device=features.device)
    for i in range(len(y)):
        label_ranks = _row_rank(-torch.abs(y[i] - y)[None, :])
        feature_ranks = RowRanker.apply(xxt[i].unsqueeze(0), interpolation_lambda)
        loss = loss + F.mse_loss(feature_ranks, label_ranks)
    return loss


# ---- inputs ------------------------------------------------------------------------------------


def fds_inputs(
    n_buckets: int, n_features: int, feature_dim: int, seed: int = 0, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, D) and buckets (N,), every bucket present (the first n_buckets rows)."""
    g = torch.Generator().manual_seed(seed)
    features = 2.0 + torch.randn(n_features, feature_dim, generator=g)
    bucket = torch.randint(0, n_buckets, (n_features,), generator=g)
    bucket[:n_buckets] = torch.arange(n_buckets)
    return features.to(device), bucket.to(device)


def ranksim_inputs(
    batch: int, feature_dim: int, seed: int = 0, distinct: bool = True, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (B, D) and 10-point scores (B,); distinct scores, or rounded to 0.5 (ties)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, feature_dim, generator=g)
    scores = (5.4 + 0.8 * torch.randn(batch, generator=g)).clamp(1, 10)
    if not distinct:
        scores = (scores * 2).round() / 2
    return features.to(device), scores.to(device)


# ---- timing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    n_buckets: int
    n_features: int
    feature_dim: int
    rank_batch: int
    rank_dim: int
    warmup: int
    rounds: int


FULL = Sizes(100, 4096, 1024, 256, 1024, 2, 15)
QUICK = Sizes(100, 1024, 256, 64, 256, 1, 5)


@dataclass(frozen=True)
class PerfResult:
    sizes: Sizes
    times: dict[str, list[float]]  # "fds ours", "fds loop", "ranksim ours", "ranksim loop"

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    @property
    def fds_speedup(self) -> float:
        return self.median("fds loop") / self.median("fds ours")

    @property
    def ranksim_speedup(self) -> float:
        return self.median("ranksim loop") / self.median("ranksim ours")


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _interleaved(pairs: dict[str, Callable[[], object]], sizes: Sizes, device) -> dict:
    names = list(pairs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(sizes.warmup + sizes.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t = _seconds(pairs[name], device)
            if r >= sizes.warmup:
                times[name].append(t)
    return times


def measure(sizes: Sizes = FULL, seed: int = 0, device: str = "cpu") -> PerfResult:
    """Time both pairs side by side with one torch thread; medians and ratios in the result."""
    dev = torch.device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        features, bucket = fds_inputs(
            sizes.n_buckets, sizes.n_features, sizes.feature_dim, seed, device
        )
        ours_fds, loop_fds = (FDS(sizes.feature_dim, sizes.n_buckets).to(dev) for _ in range(2))
        times = _interleaved(
            {
                "fds ours": lambda: ours_fds.update(features, bucket, epoch=1),
                "fds loop": lambda: loop_fds_update(loop_fds, features, bucket, epoch=1),
            },
            sizes,
            dev,
        )

        x, scores = ranksim_inputs(sizes.rank_batch, sizes.rank_dim, seed, device=device)
        x.requires_grad_(True)

        def step(fn) -> Callable[[], None]:
            def run() -> None:
                x.grad = None
                g = torch.Generator(device=dev).manual_seed(seed)
                (100.0 * fn(x, scores, 2.0, g)).backward()

            return run

        times |= _interleaved(
            {
                "ranksim ours": step(ranksim.regularizer),
                "ranksim loop": step(loop_regularizer),
            },
            sizes,
            dev,
        )
    finally:
        torch.set_num_threads(threads)
    return PerfResult(sizes, times)


def report(result: PerfResult) -> str:
    s = result.sizes
    ms = {name: 1e3 * result.median(name) for name in result.times}
    return "\n".join(
        [
            f"DIR methods, one torch thread, medians of {s.rounds} interleaved rounds",
            "| what | ours (ms) | official-style loop (ms) | speed-up |",
            "|---|---|---|---|",
            f"| FDS update, {s.n_buckets} buckets, {s.n_features} x {s.feature_dim} | "
            f"{ms['fds ours']:.2f} | {ms['fds loop']:.2f} | {result.fds_speedup:.1f}x |",
            f"| RankSim forward + backward, batch {s.rank_batch} x {s.rank_dim} | "
            f"{ms['ranksim ours']:.2f} | {ms['ranksim loop']:.2f} | "
            f"{result.ranksim_speedup:.1f}x |",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dev.perf_dir", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = parser.parse_args(argv)
    print(report(measure(QUICK if args.quick else FULL, device=args.device)))


if __name__ == "__main__":
    main()
