"""RankSim, Gong et al. ICML 2022: align the ranking of feature similarities with that of labels.

For a batch of pooled features z (B, D) and label scores y (B,):
  1. keep one sample per distinct score, drawn uniformly at random (`representatives`); K kept;
  2. S_ij = cos(z_i, z_j) over the kept samples (K x K, diagonal included);
  3. for each row i: feature ranks rk(S_i.) and label ranks rk(-|y_i - y_j|), where
     rk(v)_j = (1 + position of v_j in v sorted in decreasing order) / K;
  4. loss = sum_i MSE(rk(S_i.), rk(-|y_i - y.|))   (mean over a row, summed over the K rows).
The ranking of S is differentiated with the blackbox combinatorial solver rule (Vlastelica et
al. ICLR 2020, `BlackboxRank`): with upstream gradient g, the gradient with respect to the
sequence is -(rk(S) - rk(S + lambda g)) / lambda, lambda the interpolation strength. The total
training loss is L_reg + gamma * loss (official recommendation gamma = 100, lambda = 2).

Everything is one fixed-shape (B, B) computation, without a host sync: instead of gathering the
K kept samples (a data-dependent size), the other columns are set to -inf, so that they rank
after the kept ones, and rows and columns of the others get weight 0. Ranks are positions in
one stable sort of the whole matrix along its rows (no loop over rows).

Choices where the official code (`agedb-dir/ranksim.py`, `ranking.py`) is silent or random:
  - Ties. The official code picks the representative of a score with Python's global `random`
    and ranks with a non-stable argsort, so tied similarities get an arbitrary order. Here the
    representative comes from `generator` (a random permutation: the sample with the lowest
    key of its score group), and ties rank by batch position (stable sort: the earlier sample
    first). The official subset is ordered by score (torch.unique), ours by batch position, so
    equidistant labels (y_i - d, y_i + d) may swap places between the two.
  - Precision. The similarities are computed in float32 with autocast off: bf16 cosines near 1
    are 0.004 apart and would create ties.
  - lambda must be > 0 (the official code divides by lambda + 1e-8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from baselines.dir import check_ranksim


def representatives(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) bool: one sample per distinct score, uniformly at random within each score group."""
    s = scores.detach().reshape(-1)
    key = torch.randperm(s.numel(), generator=generator, device=s.device)
    same = s[:, None] == s[None, :]
    return ~(same & (key[None, :] < key[:, None])).any(dim=1)


def descending_rank(seq: torch.Tensor) -> torch.Tensor:
    """Position of each entry of each row in the row sorted in decreasing order (0 = largest);
    ties by position (stable)."""
    order = torch.sort(seq, dim=-1, descending=True, stable=True).indices
    positions = torch.arange(seq.shape[-1], device=seq.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, positions)


def normalised_rank(seq: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
    """(1 + descending rank) / n, in the dtype of `seq`."""
    return (descending_rank(seq) + 1).to(seq.dtype) / n


class BlackboxRank(torch.autograd.Function):
    """Row-wise normalised rank; backward -(rk(s) - rk(s + lambda g)) / lambda (Vlastelica)."""

    @staticmethod
    def forward(ctx, seq: torch.Tensor, interpolation_lambda: float, n: torch.Tensor | int):
        rank = normalised_rank(seq, n)
        ctx.interpolation_lambda, ctx.n = interpolation_lambda, n
        ctx.save_for_backward(seq, rank)
        return rank

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        seq, rank = ctx.saved_tensors
        lam = ctx.interpolation_lambda
        perturbed = normalised_rank(seq + lam * grad_output, ctx.n)
        return -(rank - perturbed) / lam, None, None


def rank_mse(
    similarity: torch.Tensor,
    scores: torch.Tensor,
    keep: torch.Tensor,
    interpolation_lambda: float,
) -> torch.Tensor:
    """Steps 3-4 for a (B, B) feature-similarity matrix, restricted to the `keep` samples."""
    keep = keep.reshape(-1)
    pair = keep[:, None] & keep[None, :]
    n_kept = keep.sum().to(similarity.dtype)
    s = scores.detach().reshape(-1).to(similarity.dtype)
    dropped_column = ~keep[None, :]
    label_seq = (-(s[:, None] - s[None, :]).abs()).masked_fill(dropped_column, float("-inf"))
    label_rank = normalised_rank(label_seq, n_kept)
    feature_seq = similarity.masked_fill(dropped_column, float("-inf"))
    feature_rank = BlackboxRank.apply(feature_seq, interpolation_lambda, n_kept)
    squared = (feature_rank - label_rank).square() * pair
    return squared.sum() / n_kept


def regularizer(
    features: torch.Tensor,
    scores: torch.Tensor,
    interpolation_lambda: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RankSim's batch-wise ranking regulariser of features (B, ...) and label scores (B,)."""
    check_ranksim(0.0, interpolation_lambda)
    with torch.autocast(features.device.type, enabled=False):
        unit = F.normalize(features.float().reshape(features.shape[0], -1), dim=1)
        similarity = unit @ unit.T
    keep = representatives(scores, generator)
    return rank_mse(similarity, scores, keep, interpolation_lambda)
