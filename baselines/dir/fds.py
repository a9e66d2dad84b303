"""Feature Distribution Smoothing (FDS), Yang et al. ICML 2021, Section 3.2.

Pooled features z are grouped by the label bucket of their sample (`lds.bin_index`). After each
training epoch e >= start_update, `update` takes that epoch's features:
  - per bucket b: mean mu_b and unbiased variance var_b over the samples in b (a bucket of one
    sample has variance 0, as the official code's biased fallback);
  - running statistics m_b <- momentum * m_b + (1 - momentum) * mu_b (the same for v_b); the
    first update of a bucket replaces its initial statistics (mean 0, variance 1);
  - smoothed statistics m~, v~: m and v convolved over the buckets with the window of
    `lds.kernel_window`, normalised to sum 1, with reflect padding at both ends.
During training from epoch start_smooth on, `smooth` calibrates each feature of a sample in
bucket b (element-wise over the D dimensions):
  z' = (z - m_b) * sqrt(clamp(v~_b / v_b, clip[0], clip[1])) + m~_b
and returns z unchanged before start_smooth and in eval mode. Per-bucket statistics are
computed with index_add over the batch (no loop over buckets or samples), the smoothing is one
(n, n) matrix product (`smoothing_matrix`: the official pad + conv1d applied once to the unit
vectors); `smooth` is a gather and element-wise arithmetic (no host sync), so a sample's output
never depends on its batch.

Choices where the paper or the official code (`agedb-dir/fds.py`, `sts-b-dir/fds.py`) differ:
  - Timing. The official end of epoch e first copies the running statistics into the
    "last epoch" buffers and smooths them, then updates the running ones, and the copy is an
    alias (`self.running_mean_last_epoch = self.running_mean`), so calibration in epoch e+1 uses
    m, v of epoch e but m~, v~ of epoch e-1, and nothing is calibrated before epoch 2. Here, as
    the paper describes it, one `update` refreshes m, v and then m~, v~ from them: epoch e+1 is
    calibrated with the statistics of the epoch just finished. Buffers are never aliased.
  - `smooth` returns a new tensor; the official one writes into its input, and since the model
    returns that same tensor as "the feature", the official epoch-end statistics (and RankSim)
    are of calibrated features from start_smooth on. Ours are of the features before
    calibration (the paper's z).
  - Empty buckets. AgeDB's code leaves a bucket without samples at mean 0 / variance 1 and lets
    those values into its neighbours' smoothing; STS-B's fills it with the average of its two
    neighbours. Here a bucket that has never had a sample takes no part in the smoothing (a
    normalised convolution: sum_k w_k s_k [seen_k] / sum_k w_k [seen_k], equal to the plain
    one when every bucket is seen), and its own smoothed statistics equal its running ones
    (0 and 1), so a sample that falls in it is left unchanged: there is nothing to calibrate
    it against. A bucket seen before but empty in this update keeps its statistics.
  - Zero variance. Dimensions with v_b = 0 are left unchanged (as the official
    `calibrate_mean_var`, which calibrates only the dimensions with v_b != 0).
  - Clamp of the variance ratio: [0.1, 10] (AgeDB / IMDB-WIKI; STS-B uses [0.5, 2], NYUD2
    [0.2, 5]): `clip`. Window defaults ks=5, sigma=2 (the FDS class's and the paper's
    recommended setting; AgeDB's train.py passes ks=9, sigma=1).

Streaming: `accumulate(features, bucket)` merges one batch into per-bucket (count, mean, M2)
sums (Chan et al.'s parallel update, stable in float32) and `end_epoch(epoch)` applies them as
one `update`, so a training loop can take an epoch's statistics from its own training features
without storing them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.dir import check_clip, check_kernel, check_momentum
from baselines.dir.lds import kernel_window

DEFAULT_CLIP = (0.1, 10.0)


def bucket_statistics(
    features: torch.Tensor, bucket: torch.Tensor, n_buckets: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bucket (count (n,), mean (n, D), M2 (n, D)) of features (B, D), in float32.

    M2 is the sum of squared deviations from the bucket mean, from one pass of sums and sums of
    squares of the features minus the first row: the shift keeps the float32 sums well
    conditioned (every bucket's mean lies within a few standard deviations of any one feature;
    checked against float64 in the tests), costs no pass of its own, and one pass needs no
    gather of the means back to the rows. Empty buckets have count 0, mean 0, M2 0."""
    x = features.detach().float()
    b = bucket.reshape(-1).long()
    if x.dim() != 2 or x.shape[0] != b.shape[0]:
        raise ValueError(
            f"FDS needs features (B, D) and one bucket per row, got {tuple(x.shape)} and "
            f"{tuple(bucket.shape)}"
        )
    ones = torch.ones(b.shape, dtype=x.dtype, device=x.device)
    count = torch.zeros(n_buckets, dtype=x.dtype, device=x.device).index_add_(0, b, ones)
    shift = x[0] if len(x) else x.new_zeros(x.shape[1])
    y = x - shift
    total = torch.zeros(n_buckets, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, b, y)
    squares = torch.zeros_like(total).index_add_(0, b, y.square_())  # y's buffer, squared
    mean = total / count.clamp_min(1)[:, None]
    m2 = (squares - mean * total).clamp_min_(0)  # sum (y - mean_y)^2 = sum y^2 - mean_y sum y
    mean = torch.where(count[:, None] > 0, mean + shift, 0.0)
    return count, mean, m2


def unbiased_variance(count: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """M2 / (count - 1); 0 for a bucket of one sample (M2 is 0 there)."""
    return m2 / (count - 1).clamp_min(1)[:, None]


def merge_statistics(
    a: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    b: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count, mean, M2) of the union of two sample sets, per bucket (Chan et al. 1979)."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    share_b = (n_b / n.clamp_min(1))[:, None]
    delta = mean_b - mean_a
    mean = mean_a + delta * share_b
    m2 = m2_a + m2_b + delta * delta * (n_a[:, None] * share_b)
    return n, mean, m2


def smoothing_matrix(window: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """(n, n) matrix M with M @ s = s convolved over the buckets with `window`, reflect padding.

    Built once by smoothing the unit vectors (pad + conv1d, the official operation), so that
    smoothing (n, D) statistics is one small matrix product."""
    half = (window.numel() - 1) // 2
    units = torch.eye(n_buckets, dtype=window.dtype, device=window.device)[:, None, :]
    padded = F.pad(units, (half, half), mode="reflect") if half else units
    return F.conv1d(padded, window.view(1, 1, -1))[:, 0].T  # column j: smoothed unit j


def bucket_smoother(matrix: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """The (n, n) smoothing matrix restricted to the seen buckets: columns of unseen buckets
    zeroed, rows renormalised to sum 1 (normalised convolution); an unseen bucket's row, or
    one that reaches no seen bucket, is the identity row (it keeps its own statistics)."""
    mask = seen.to(matrix.dtype)
    restricted = matrix * mask[None, :]
    total = restricted.sum(1)
    own = (mask == 0) | (total <= 0)
    normalised = restricted / total.clamp_min(torch.finfo(matrix.dtype).tiny)[:, None]
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    return torch.where(own[:, None], eye, normalised)


def smooth_over_buckets(
    stat: torch.Tensor, matrix: torch.Tensor, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """Smooth (n, D) statistics over the buckets with a `smoothing_matrix`; with `seen` (n,)
    bool, leave the unseen buckets out (`bucket_smoother`)."""
    return (matrix if seen is None else bucket_smoother(matrix, seen)) @ stat


def calibrate(
    features: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    smoothed_mean: torch.Tensor,
    smoothed_var: torch.Tensor,
    clip: tuple[float, float] = DEFAULT_CLIP,
) -> torch.Tensor:
    """(z - m) * sqrt(clamp(v~ / v, *clip)) + m~, element-wise; dimensions with v = 0 unchanged."""
    positive = var > 0
    ratio = smoothed_var / torch.where(positive, var, torch.ones_like(var))
    scale = ratio.clamp(clip[0], clip[1]).sqrt()
    return torch.where(positive, (features - mean) * scale + smoothed_mean, features)


class FDS(nn.Module):
    """Feature Distribution Smoothing over `n_buckets` label buckets of `feature_dim` features.

    Buffers (saved in the state dict): running_mean, running_var, smoothed_mean, smoothed_var
    (n_buckets, feature_dim) and seen (n_buckets,) bool."""

    def __init__(
        self,
        feature_dim: int,
        n_buckets: int,
        kernel: str = "gaussian",
        ks: int = 5,
        sigma: float = 2.0,
        momentum: float = 0.9,
        start_update: int = 0,
        start_smooth: int = 1,
        clip: tuple[float, float] = DEFAULT_CLIP,
    ) -> None:
        super().__init__()
        if n_buckets < 1 or feature_dim < 1:
            raise ValueError(
                f"FDS needs n_buckets >= 1 and feature_dim >= 1, got {n_buckets}, {feature_dim}"
            )
        check_kernel(kernel, ks, sigma, n_buckets)
        check_momentum(momentum)
        check_clip(clip)
        self.feature_dim, self.n_buckets = feature_dim, n_buckets
        self.momentum, self.clip = momentum, (float(clip[0]), float(clip[1]))
        self.start_update, self.start_smooth = start_update, start_smooth
        window = torch.as_tensor(kernel_window(kernel, ks, sigma), dtype=torch.float32)
        window = window / window.sum()
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("smoother", smoothing_matrix(window, n_buckets), persistent=False)
        shape = (n_buckets, feature_dim)
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))
        self.register_buffer("smoothed_mean", torch.zeros(shape))
        self.register_buffer("smoothed_var", torch.ones(shape))
        self.register_buffer("seen", torch.zeros(n_buckets, dtype=torch.bool))
        # The current epoch's sums (accumulate / end_epoch); not part of the state dict.
        self.register_buffer("_acc_count", torch.zeros(n_buckets), persistent=False)
        self.register_buffer("_acc_mean", torch.zeros(shape), persistent=False)
        self.register_buffer("_acc_m2", torch.zeros(shape), persistent=False)

    def _check_dim(self, features: torch.Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"FDS expects features (B, {self.feature_dim}), got {tuple(features.shape)}"
            )

    @torch.no_grad()
    def update(self, features: torch.Tensor, bucket: torch.Tensor, epoch: int) -> None:
        """Fold one epoch's features (B, D) with their buckets (B,) into the statistics."""
        if epoch < self.start_update:
            return
        self._check_dim(features)
        self._fold(bucket_statistics(features, bucket, self.n_buckets))

    @torch.no_grad()
    def accumulate(self, features: torch.Tensor, bucket: torch.Tensor) -> None:
        """Add one batch of the current epoch's features to the epoch's per-bucket sums."""
        self._check_dim(features)
        batch = bucket_statistics(features, bucket, self.n_buckets)
        merged = merge_statistics((self._acc_count, self._acc_mean, self._acc_m2), batch)
        for buffer, value in zip(
            (self._acc_count, self._acc_mean, self._acc_m2), merged, strict=True
        ):
            buffer.copy_(value)

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> None:
        """`update` with everything accumulated since the last call, then clear the sums."""
        if epoch >= self.start_update:
            self._fold((self._acc_count, self._acc_mean, self._acc_m2))
        self._acc_count.zero_()
        self._acc_mean.zero_()
        self._acc_m2.zero_()

    def _fold(self, stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        count, mean, m2 = stats
        present = count > 0
        # weight of the epoch's statistics: 1 - momentum, 1 at a bucket's first update, 0 when
        # the bucket is empty in this epoch (it keeps its statistics)
        step = torch.where(self.seen, 1 - self.momentum, 1.0) * present
        for running, epoch_stat in (
            (self.running_mean, mean),
            (self.running_var, unbiased_variance(count, m2)),
        ):
            running.add_((epoch_stat - running).mul_(step[:, None]))
        self.seen |= present
        smoother = bucket_smoother(self.smoother, self.seen)
        torch.matmul(smoother, self.running_mean, out=self.smoothed_mean)
        torch.matmul(smoother, self.running_var, out=self.smoothed_var)

    def smooth(self, features: torch.Tensor, bucket: torch.Tensor, epoch: int) -> torch.Tensor:
        """Calibrated features (a new tensor) in training from start_smooth on; else `features`."""
        if not self.training or epoch < self.start_smooth:
            return features
        self._check_dim(features)
        b = bucket.reshape(-1).long()
        stats = (self.running_mean, self.running_var, self.smoothed_mean, self.smoothed_var)
        out = calibrate(features.float(), *(s.index_select(0, b) for s in stats), self.clip)
        return out.to(features.dtype)
