"""Label Distribution Smoothing (LDS), Yang et al. ICML 2021, Section 3.1.

The loss of a training sample is weighted by the inverse of the *smoothed* density of its label:
  1. histogram the training labels over fixed bins;
  2. "sqrt_inv": take the square root of each count; "inverse": clip each count to [5, 1000]
     (as the official `agedb-dir/datasets.py: _prepare_weights`);
  3. convolve the counts with a symmetric window of peak 1 (`kernel_window`), zero outside the
     bins (scipy `convolve1d`, mode "constant");
  4. weight = 1 / smoothed count of the sample's bin, scaled so that the training samples'
     weights average 1.

Windows (`kernel_window`, official `utils.py: get_lds_kernel_window`), all of peak 1:
  gaussian: scipy `gaussian_filter1d` of a centred delta of length ks, divided by its maximum.
    scipy filters with mode "reflect" and truncates at 4 sigma, so the Gaussian's tails beyond
    the ks points fold back into the window: for ks=5, sigma=2 the window is
    [0.858, 0.946, 1, 0.946, 0.858], flatter than exp(-d^2 / 2 sigma^2) = [0.607, 0.882, 1, ...].
    That is the official window and we keep it.
  triang: scipy `windows.triang(ks)`; sigma is unused.
  laplace: exp(-|d| / sigma) (the official exp(-|d|/sigma) / (2 sigma) divided by its maximum).
ks = 1 gives the window [1]: plain square-root / inverse reweighting without smoothing.

Bins for 10-point scores (`SCORE_BIN_EDGES`): 100 bins 0.1 wide over [0, 10].
  - The official code bins real-valued labels this way in its STS-B variant (50 bins of 0.1 over
    [0, 5], `sts-b-dir/tasks.py`); STS-B labels are, like ours, means of annotators' ratings.
  - 0.1 is about the standard error of a mean score of AVA (about 200 votes with a spread of
    about 1.4 points per vote): finer bins would resolve rating noise, not density.
  - 100 buckets is also the official FDS default (`bucket_num=100` for AgeDB's 1-year bins), so
    ks=5, sigma=2 keep their published meaning: smoothing over +-2 buckets, here +-0.2 points.
  - Edges sit EDGE_TOL = 1e-4 below the multiples of 0.1. A mean of n votes is k/n, often a
    multiple of 0.1 (318 / 53 = 6.0); computed in float32 (the expected score of a rating
    distribution) such a value lands just below or just above the exact edge, and would change
    bin between float32 and float64. With the shifted edges both fall in the upper bin, and no
    other score moves: |k/n - m/10| >= 1/(10 n) >= 2e-4 for n <= 500 unless k/n = m/10.
  - Scores outside [0, 10] count in the end bins (np.histogram would drop them), as the official
    AgeDB code folds ages >= 120 into its last bin.

The same bins serve a training step: `bin_index(scores, edges)` maps a score tensor of any shape
to bin indices on its device (torch.bucketize, no host sync), and `bin_weights(...)` returns the
per-bin weight table, so that `table[bin_index(scores, edges)]` equals `sample_weights(...)` for
the training scores. The host-side `bin_indices` uses the same rule (np.searchsorted).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import convolve1d, gaussian_filter1d
from scipy.signal.windows import triang

from baselines.dir import N_SCORE_BINS, check_kernel, check_reweight

BIN_WIDTH = 0.1
EDGE_TOL = 1e-4
SCORE_BIN_EDGES = np.arange(N_SCORE_BINS + 1) / 10 - EDGE_TOL  # float64, 101 edges
INVERSE_CLIP = (5.0, 1000.0)  # official "inverse": counts clipped before smoothing


def kernel_window(kernel: str, ks: int, sigma: float) -> np.ndarray:
    """The official LDS window of `ks` points (peak 1) for "gaussian", "triang", "laplace"."""
    check_kernel(kernel, ks, sigma)
    half = (ks - 1) // 2
    if kernel == "gaussian":
        delta = np.zeros(ks)
        delta[half] = 1.0
        window = gaussian_filter1d(delta, sigma=sigma)
    elif kernel == "triang":
        window = triang(ks)
    else:
        window = np.exp(-np.abs(np.arange(-half, half + 1)) / sigma)
    return window / window.max()


def _inner_edges(bin_edges: np.ndarray) -> np.ndarray:
    edges = np.asarray(bin_edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
        raise ValueError("LDS bin_edges must be a 1-D increasing array of at least 2 edges")
    return edges[1:-1]


def bin_indices(scores: np.ndarray, bin_edges: np.ndarray = SCORE_BIN_EDGES) -> np.ndarray:
    """Bin of each score on the host: [e_k, e_k+1) -> k, the last bin closed, outside -> ends."""
    return np.searchsorted(_inner_edges(bin_edges), np.asarray(scores, np.float64), side="right")


def bin_index(scores: torch.Tensor, bin_edges: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Bin of each score of a tensor (any shape), on its device, without a host sync.

    Same rule as `bin_indices`. Pass `bin_edges` as a tensor already on the scores' device
    (`torch.as_tensor(SCORE_BIN_EDGES, device=...)`, once) to avoid a copy per call. Scores are
    compared in float32 at least: bf16 (autocast) cannot tell 0.1-wide bins apart."""
    edges = torch.as_tensor(bin_edges, device=scores.device)
    dtype = torch.promote_types(scores.dtype, torch.float32)
    return torch.bucketize(scores.to(dtype), edges[1:-1].to(dtype), right=True)


def smoothed_counts(
    train_scores: np.ndarray,
    bin_edges: np.ndarray,
    reweight: str,
    kernel: str = "gaussian",
    ks: int = 5,
    sigma: float = 2.0,
) -> np.ndarray:
    """Steps 1-3: the effective (reweighted, smoothed) count of every bin."""
    check_reweight(reweight)
    n_bins = len(bin_edges) - 1
    check_kernel(kernel, ks, sigma, n_bins)
    counts = np.bincount(bin_indices(train_scores, bin_edges), minlength=n_bins).astype(np.float64)
    if reweight == "sqrt_inv":
        counts = np.sqrt(counts)
    else:
        counts = np.clip(counts, *INVERSE_CLIP)
    return convolve1d(counts, kernel_window(kernel, ks, sigma), mode="constant")


def bin_weights(
    train_scores: np.ndarray,
    bin_edges: np.ndarray,
    reweight: str,
    kernel: str = "gaussian",
    ks: int = 5,
    sigma: float = 2.0,
) -> np.ndarray:
    """The per-bin weight table: 1 / smoothed count, scaled so that the training samples'
    weights average 1. A bin with no training sample within its window (smoothed count 0, only
    with "sqrt_inv") gets the table's largest weight instead of infinity."""
    train_scores = np.asarray(train_scores, np.float64).reshape(-1)
    if train_scores.size == 0:
        raise ValueError("LDS needs at least one training score")
    smoothed = smoothed_counts(train_scores, bin_edges, reweight, kernel, ks, sigma)
    reached = smoothed > 0
    table = np.zeros_like(smoothed)
    table[reached] = 1.0 / smoothed[reached]
    per_sample = table[bin_indices(train_scores, bin_edges)]
    table *= len(per_sample) / per_sample.sum()
    table[~reached] = table[reached].max()
    return table


def sample_weights(
    train_scores: np.ndarray,
    bin_edges: np.ndarray,
    reweight: str,
    kernel: str = "gaussian",
    ks: int = 5,
    sigma: float = 2.0,
) -> np.ndarray:
    """LDS loss weight of every training sample (mean 1), in the order of `train_scores`."""
    table = bin_weights(train_scores, bin_edges, reweight, kernel, ks, sigma)
    return table[bin_indices(train_scores, bin_edges)]
