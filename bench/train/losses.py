"""Training losses (paper, Appendix A.2): EMD for rating distributions, MSE for scalar scores,
on whatever a model's head returns (its `output`, bench.train.losses.OUTPUTS).

    logits        (B, 10) logits over the rating bins; the distribution is their softmax
                  (every model at the cpu and smoke profiles; Swin V2, NIMA, HGCN, MaxViT,
                  MUSIQ and TANet on AVA at paper)
    distribution  (B, 10) the distribution itself, not normalised (EAT's official head: the EMD
                  and the score sum_k k out_k are taken on its raw outputs)
    score         (B, 1) the score / 10 (BIAA's FC(512, 1) + sigmoid; TANet's and EAT's
                  TAD66K heads)

Distribution labels (AVA) are compared with a distribution by the EMD with r = 2 (NIMA's):
per sample, sqrt(mean_k (CDF_p - CDF_q)_k^2), averaged over the batch (`per_sample`), or one
root of the mean over batch AND bins (`batch_rms`, the official ELTA, TANet and EAT code). With
a `score` head, a distribution label is read as its mean score. Scalar labels (AADB, TAD66K,
PARA) are compared by MSE on the score / 10 (the official codes' targets), the score of a
distribution head being its expected score (paper Section 3.1: "the model can still output a
distribution and then minimize the gap between the score s_hat derived from the distribution
and the ground truth").
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from elta.apds import expected_score

EmdForm = Literal["per_sample", "batch_rms"]
Output = Literal["logits", "distribution", "score"]
OUTPUTS = ("logits", "distribution", "score")


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


def distribution(outputs: torch.Tensor, output: Output) -> torch.Tensor:
    """The (B, 10) distribution a head's outputs stand for (not for a `score` head)."""
    if output == "score":
        raise ValueError("a score head has no distribution")
    return torch.softmax(outputs.float(), dim=-1) if output == "logits" else outputs.float()


def scores(outputs: torch.Tensor, output: Output) -> torch.Tensor:
    """(B,) scores on the 10-point scale: the expected score of a distribution head
    (sum_k k p_k, not renormalised for a raw one, as EAT's `get_score`), 10 x a score head."""
    if output == "score":
        return 10 * outputs.float().reshape(len(outputs))
    return expected_score(distribution(outputs, output))


def predicted_scores(outputs: np.ndarray, output: Output = "logits") -> np.ndarray:
    """`scores` of stored outputs (N, K), as a float NumPy array."""
    return scores(torch.from_numpy(outputs), output).numpy()


def per_sample_loss(
    outputs: torch.Tensor, target: torch.Tensor, output: Output = "logits"
) -> torch.Tensor:
    """H of eq. 10 for each sample: the EMD of (B, C) distribution labels, the squared error of
    the score / 10 for scalar labels and for a `score` head."""
    if target.dim() == 2 and output != "score":
        return emd_per_sample(distribution(outputs, output), target.float())
    truth = expected_score(target.float()) if target.dim() == 2 else target.float()
    return (scores(outputs, output) / 10 - truth / 10).pow(2)


def batch_loss(
    outputs: torch.Tensor,
    target: torch.Tensor,
    emd_form: EmdForm,
    weights: torch.Tensor | None = None,
    output: Output = "logits",
) -> torch.Tensor:
    """The supervised loss of a batch: the mean of the per-sample losses, each multiplied by
    its weight when `weights` (B,) are given (LDS, as the official weighted losses). `batch_rms`
    is the official ELTA, TANet and EAT code's EMD: one root of the mean over batch AND bins,
    instead of the mean of per-sample EMDs (with weights, of the weighted per-sample means over
    bins)."""
    if target.dim() == 2 and output != "score" and emd_form == "batch_rms":
        cdf_gap = torch.cumsum(distribution(outputs, output), -1) - torch.cumsum(target.float(), -1)
        per_sample = cdf_gap.pow(2).mean(-1)
        return _sqrt((per_sample if weights is None else per_sample * weights).mean())
    per_sample = per_sample_loss(outputs, target, output)
    return (per_sample if weights is None else per_sample * weights).mean()
