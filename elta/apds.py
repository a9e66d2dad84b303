"""Adaptive Probability Distribution Sharpening (APDS), paper Section 3.4.

  eq. 8   tau_i(beta) = exp(-beta |s_hat_i - s_bar|),   y_hat_i = softmax(z_i / tau_i(beta))
          s_bar is the mean predicted score over the candidate set (the images being labelled)
  select  max(y_hat_i(beta)) >= t                                  (the set D' of Section 3.4)
  eq. 9   beta*, t* = argmin_{beta, t} MAE(s_hat_i, s_i) over the selected labelled samples

The MAE of eq. 9 is taken on the scores of the pseudo-labels that self-training will use: the
unsharpened predictions (as the official code), so (beta, t) act through the selection. Eq. 9
writes a sum; a sum favours selecting almost nothing, so we use the mean and require at least
`min_selected` picks, as the official code does (it requires more than 10).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch


def expected_score(probs: torch.Tensor) -> torch.Tensor:
    """s = sum_j j * p_j over bins j = 1..C (Section 3.1)."""
    bins = torch.arange(1, probs.shape[-1] + 1, device=probs.device, dtype=probs.dtype)
    return (probs * bins).sum(-1)


def sharpen(
    logits: torch.Tensor, pred_scores: torch.Tensor, beta: float | torch.Tensor
) -> torch.Tensor:
    """Eq. 8: score-adaptive temperature softmax of logits (N, C).

    `beta` may be a float (returns (N, C)) or a 1-D tensor of betas (returns (n_beta, N, C)).
    """
    beta = torch.as_tensor(beta, dtype=logits.dtype, device=logits.device)
    deviation = (pred_scores - pred_scores.mean()).abs().to(logits.dtype)
    tau = torch.exp(-beta[..., None] * deviation)  # beta.shape + (N,)
    return torch.softmax(logits / tau[..., None], dim=-1)


def select(
    logits: torch.Tensor, pred_scores: torch.Tensor, beta: float, threshold: float
) -> torch.Tensor:
    """Boolean mask of the candidates whose sharpened top-1 probability reaches `threshold`."""
    return sharpen(logits, pred_scores, beta).amax(-1) >= threshold


@dataclass(frozen=True)
class GridResult:
    beta: float
    threshold: float
    mae: float
    count: int
    grid: pd.DataFrame  # one row per (beta, threshold): mae (NaN below min_selected), count


def grid_search(
    logits: torch.Tensor,
    pred_scores: torch.Tensor,
    true_scores: torch.Tensor,
    betas: list[float],
    thresholds: list[float],
    min_selected: int,
) -> GridResult:
    """Eq. 9 over the whole (beta, t) grid in one vectorised pass.

    logits, pred_scores, true_scores describe a labelled candidate set (held out from the
    validation split, never the test set). Ties in MAE go to the first cell in grid order.
    Raises ValueError when no cell selects `min_selected` samples.
    """
    beta_t = torch.as_tensor(betas, dtype=logits.dtype, device=logits.device)
    t_t = torch.as_tensor(thresholds, dtype=logits.dtype, device=logits.device)
    confidence = sharpen(logits, pred_scores, beta_t).amax(-1)  # (n_beta, N)
    selected = (confidence[:, None, :] >= t_t[None, :, None]).to(logits.dtype)  # (nb, nt, N)
    error = (pred_scores - true_scores).abs().to(logits.dtype)
    count = selected.sum(-1)
    mae = (selected * error).sum(-1) / count.clamp_min(1)
    valid = count >= min_selected

    grid = pd.DataFrame(
        {
            "beta": np.repeat(betas, len(thresholds)),
            "threshold": np.tile(thresholds, len(betas)),
            "mae": torch.where(valid, mae, torch.nan).reshape(-1).cpu().numpy(),
            "count": count.reshape(-1).long().cpu().numpy(),
        }
    )
    if not bool(valid.any()):
        raise ValueError(
            f"APDS grid search: no (beta, t) selects at least {min_selected} of "
            f"{len(error)} candidates (largest selection: {int(count.max())})"
        )
    best = int(torch.where(valid, mae, torch.inf).reshape(-1).argmin())
    row = grid.iloc[best]
    return GridResult(
        beta=float(row.beta),
        threshold=float(row.threshold),
        mae=float(row.mae),
        count=int(row["count"]),
        grid=grid,
    )
