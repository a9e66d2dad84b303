"""Tail Features Augmentation (TFA): mixup of pooled features, pairs drawn towards the tails.

Paper Section 3.2. For a batch with label scores s (mean s_bar):
  eq. 2   P(i)   = softmax_k(|s_bar - s_k| / tau1)          first member, drawn without replacement
  eq. 3   P(j|i) = softmax_{k != i}(tau2 / |s_i - s_k|)     partner: close in score to i
  eq. 4   lam    = P(i) / (P(i) + P(j))                     the more extreme sample dominates
  eq. 1   z~ = lam z_i + (1 - lam) z_j,   y~ = lam y_i + (1 - lam) y_j

Everything is vectorised over the pairs and stays on the input's device (no host sync).

Ties. Eq. 3 is undefined when |s_i - s_k| = 0: its limit puts all of P(j|i) on the partners that
tie with i, uniformly. We compute eq. 3 as a softmax over tau2 / max(|s_i - s_k|, TIE_EPS),
which is that limit (tied partners get equal, dominant logits) and stays finite for every
tau2 > 0 because softmax subtracts the row maximum. The official code instead adds 0.01 to the
distance and exponentiates directly, which overflows to inf/NaN once tau2 / 0.01 > 709.
"""

from __future__ import annotations

import torch

TIE_EPS = 1e-6


def _check_taus(tau1: float, tau2: float) -> None:
    if not (tau1 > 0 and tau2 > 0):
        raise ValueError(f"TFA temperatures must be > 0, got tau1={tau1}, tau2={tau2}")


def sample_pairs(
    scores: torch.Tensor,
    n_pairs: int,
    tau1: float,
    tau2: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw `n_pairs` mixup pairs from a batch of label scores (eqs. 2-4).

    Returns (i, j, lam): long tensors of first and second members (i distinct, j != i) and the
    mixing weights lam of eq. 4, each of shape (n_pairs,). `n_pairs` is capped at the batch size.
    """
    _check_taus(tau1, tau2)
    scores = scores.detach().float()
    batch = scores.shape[0]
    if batch < 2:
        raise ValueError(f"TFA needs at least 2 samples in a batch, got {batch}")
    n_pairs = min(int(n_pairs), batch)

    deviation = (scores - scores.mean()).abs()  # |s_bar - s_k|
    p_first = torch.softmax(deviation / tau1, dim=0)  # eq. 2
    i = torch.multinomial(p_first, n_pairs, replacement=False, generator=generator)

    gap = (scores[i, None] - scores[None, :]).abs().clamp_min(TIE_EPS)  # (n_pairs, B)
    partner_logits = tau2 / gap
    partner_logits[torch.arange(n_pairs, device=scores.device), i] = float("-inf")  # k != i
    p_partner = torch.softmax(partner_logits, dim=1)  # eq. 3
    j = torch.multinomial(p_partner, 1, generator=generator).squeeze(1)

    lam = torch.sigmoid((deviation[i] - deviation[j]) / tau1)  # eq. 4, in a stable form
    return i, j, lam


def mix(
    features: torch.Tensor,
    targets: torch.Tensor,
    scores: torch.Tensor,
    n_pairs: int,
    tau1: float,
    tau2: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append `n_pairs` mixed samples, drawn by eqs. 2-4 and mixed by eq. 1, to a batch.

    features: (B, ...) pooled features (or images, for pixel-level mixup: k = 0 in eq. 1).
    targets: (B, C) distributions or (B,) scalar scores. scores: (B,) label scores that drive
    the sampling. Returns (features, targets) with B + n_pairs rows, the originals first.
    """
    i, j, lam = sample_pairs(scores, n_pairs, tau1, tau2, generator)
    return mix_pairs(features, targets, i, j, lam)


def mix_pairs(
    features: torch.Tensor,
    targets: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    lam: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1 for given pairs: append lam z_i + (1 - lam) z_j (and the same of the targets)."""
    lam_f = lam.to(features.dtype).view(-1, *([1] * (features.dim() - 1)))
    lam_t = lam.to(targets.dtype).view(-1, *([1] * (targets.dim() - 1)))
    mixed_features = lam_f * features[i] + (1 - lam_f) * features[j]
    mixed_targets = lam_t * targets[i] + (1 - lam_t) * targets[j]
    return torch.cat([features, mixed_features]), torch.cat([targets, mixed_targets])
