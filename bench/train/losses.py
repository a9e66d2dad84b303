"""Training losses (paper, Appendix A.2): EMD for rating distributions, MSE for scalar scores.

Every model outputs logits over the 10 rating bins. Distribution labels are compared with the
softmax by EMD; scalar labels with the expected score of that softmax (paper Section 3.1: "the
model can still output a distribution and then minimize the gap between the score s_hat derived
from the distribution and the ground truth"), scaled to [0, 1] as the official code's targets.
"""

from __future__ import annotations

from typing import Literal

import torch

from elta.apds import expected_score

EmdForm = Literal["per_sample", "batch_rms"]


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt(x) for x >= 0 whose gradient at x = 0 is 0 (the subgradient), not inf: a sample
    whose prediction already equals its target (a deterministic model on its own pseudo-label,
    the first step of self-training) must not turn the batch's gradient into NaN."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1).sqrt(), 0)


def emd_per_sample(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """NIMA's EMD with r = 2, one value per sample: sqrt(mean_k (CDF_p - CDF_q)_k^2)."""
    cdf_gap = torch.cumsum(probs, -1) - torch.cumsum(target, -1)
    return _sqrt(cdf_gap.pow(2).mean(-1))


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """H of eq. 10 for each sample: EMD for (B, C) distributions, squared error on the
    score / 10 for (B,) scalar scores."""
    probs = torch.softmax(logits.float(), dim=-1)
    if target.dim() == 2:
        return emd_per_sample(probs, target.float())
    return (expected_score(probs) / 10 - target.float() / 10).pow(2)


def batch_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    emd_form: EmdForm,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The supervised loss of a batch: the mean of the per-sample losses, each multiplied by
    its weight when `weights` (B,) are given (LDS, as the official weighted losses). `batch_rms`
    is the official ELTA code's EMD: one root of the mean over batch AND bins, instead of the
    mean of per-sample EMDs (with weights, of the weighted per-sample means over bins)."""
    if target.dim() == 2 and emd_form == "batch_rms":
        probs = torch.softmax(logits.float(), dim=-1)
        cdf_gap = torch.cumsum(probs, -1) - torch.cumsum(target.float(), -1)
        per_sample = cdf_gap.pow(2).mean(-1)
        return _sqrt((per_sample if weights is None else per_sample * weights).mean())
    per_sample = per_sample_loss(logits, target)
    return (per_sample if weights is None else per_sample * weights).mean()
