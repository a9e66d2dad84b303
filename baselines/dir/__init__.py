"""Deep imbalanced regression (DIR) methods that act on a model's pooled feature and loss.

- `baselines.dir.lds`: Label Distribution Smoothing, per-sample loss weights from the smoothed
  density of the training labels (Yang et al., ICML 2021; `YyzHarry/imbalanced-regression`).
- `baselines.dir.fds`: Feature Distribution Smoothing, a per-bucket calibration of the pooled
  features towards statistics smoothed over neighbouring label buckets (same paper and code).
- `baselines.dir.ranksim`: RankSim, a regulariser aligning the ranking of feature similarities
  with the ranking of label similarities (Gong et al., ICML 2022;
  `BorealisAI/ranksim-imbalanced-regression`).

They are plain functions and one module, like `elta/`; `bench/train/dir_terms.py` decides where
they enter a training step. This file holds only the settings' validation, without torch, so
that a command line can check its flags before anything heavy is imported:
`check_settings(...)` raises a ValueError with a one-line message for the first bad setting.
"""

from __future__ import annotations

KERNELS = ("gaussian", "triang", "laplace")
N_SCORE_BINS = 100  # LDS bins and FDS buckets of 10-point scores, 0.1 wide (lds.py says why)
REWEIGHTS = ("sqrt_inv", "inverse")


def check_kernel(kernel: str, ks: int, sigma: float, n_bins: int | None = None) -> None:
    """A smoothing window: known kernel, odd positive size, sigma > 0, no wider than the bins."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown DIR kernel {kernel!r} (choose one of {', '.join(KERNELS)})")
    if isinstance(ks, bool) or not isinstance(ks, int) or ks <= 0 or ks % 2 == 0:
        raise ValueError(f"DIR kernel size ks must be a positive odd integer, got {ks!r}")
    if not sigma > 0:
        raise ValueError(f"DIR kernel sigma must be > 0, got {sigma!r}")
    if n_bins is not None and ks > n_bins:
        raise ValueError(f"DIR kernel size ks={ks} is larger than the number of buckets {n_bins}")


def check_reweight(reweight: str) -> None:
    if reweight not in REWEIGHTS:
        raise ValueError(
            f"unknown LDS reweight {reweight!r} (choose one of {', '.join(REWEIGHTS)})"
        )


def check_momentum(momentum: float) -> None:
    if not 0 <= momentum <= 1:
        raise ValueError(f"FDS momentum must be in [0, 1], got {momentum!r}")


def check_clip(clip: tuple[float, float]) -> None:
    low, high = clip
    if not 0 < low <= 1 <= high:
        raise ValueError(f"FDS variance-ratio clip must satisfy 0 < low <= 1 <= high, got {clip!r}")


def check_ranksim(gamma: float, interpolation_lambda: float) -> None:
    """RankSim's weight gamma >= 0 (0 turns it off) and interpolation lambda > 0.

    lambda = 0 is rejected too: the blackbox gradient divides by it (the official code adds
    1e-8 and then returns a zero gradient, i.e. a regulariser that trains nothing)."""
    if not gamma >= 0:
        raise ValueError(f"RankSim weight gamma must be >= 0, got {gamma!r}")
    if not interpolation_lambda > 0:
        raise ValueError(f"RankSim interpolation lambda must be > 0, got {interpolation_lambda!r}")


def check_settings(
    kernel: str = "gaussian",
    ks: int = 5,
    sigma: float = 2.0,
    n_buckets: int | None = None,
    reweight: str | None = None,
    momentum: float | None = None,
    clip: tuple[float, float] | None = None,
    gamma: float | None = None,
    interpolation_lambda: float | None = None,
) -> None:
    """Validate every DIR setting given (None: not used). Raises ValueError, one line.

    `kernel`, `ks`, `sigma` and `n_buckets` are the LDS / FDS window and bucket count;
    `reweight` LDS's; `momentum`, `clip` FDS's; `gamma`, `interpolation_lambda` RankSim's.
    """
    if n_buckets is not None and (not isinstance(n_buckets, int) or n_buckets < 1):
        raise ValueError(f"the number of DIR buckets must be an integer >= 1, got {n_buckets!r}")
    check_kernel(kernel, ks, sigma, n_buckets)
    if reweight is not None:
        check_reweight(reweight)
    if momentum is not None:
        check_momentum(momentum)
    if clip is not None:
        check_clip(clip)
    if gamma is not None or interpolation_lambda is not None:
        check_ranksim(
            0.0 if gamma is None else gamma,
            1.0 if interpolation_lambda is None else interpolation_lambda,
        )
