"""The two pair-sampling strategies that Section 4.4 compares TFA's against (not part of ELTA).

Both return (i, j, lam) like `elta.tfa.sample_pairs`, so that `elta.tfa.mix_pairs` mixes them:

random     classic mixup: first members uniformly without replacement, partners uniformly
           among the others, lam ~ Beta(1, 1) (mixup's CIFAR setting, alpha = 1)
threshold  minority-only mixing: a sample is "minority" when |s - s_bar| >= delta (batch mean,
           label-score units); both members are drawn uniformly among the minority, lam ~ Beta(1, 1)

The paper gives neither strategy's lam nor its threshold's definition; these choices are listed in
DEVIATIONS.md. Vectorised, on the scores' device, no host sync.
"""

from __future__ import annotations

import torch

# Weight of a majority sample in the threshold sampler, relative to 1 for a minority sample.
# Tiny, so that majority samples are drawn only when a batch has fewer than two minority ones
# (then mixing falls back towards random pairs) and multinomial never sees an all-zero row.
MAJORITY_WEIGHT = 1e-6


def _partners(weights: torch.Tensor, i: torch.Tensor, generator: torch.Generator | None):
    """One partner per first member, drawn in proportion to `weights` (B,), never i itself."""
    rows = weights.expand(len(i), -1).clone()
    rows[torch.arange(len(i), device=weights.device), i] = 0.0
    return torch.multinomial(rows, 1, generator=generator).squeeze(1)


def _uniform_lam(n: int, device: torch.device, generator: torch.Generator | None):
    return torch.rand(n, device=device, generator=generator)  # Beta(1, 1)


def random_pairs(
    scores: torch.Tensor, n_pairs: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Classic mixup pairs: uniform first members (distinct), uniform partners, lam ~ U(0, 1)."""
    batch = scores.shape[0]
    if batch < 2:
        raise ValueError(f"mixup needs at least 2 samples in a batch, got {batch}")
    n_pairs = min(int(n_pairs), batch)
    weights = torch.ones(batch, device=scores.device)
    i = torch.multinomial(weights, n_pairs, replacement=False, generator=generator)
    j = _partners(weights, i, generator)
    return i, j, _uniform_lam(n_pairs, scores.device, generator)


def threshold_pairs(
    scores: torch.Tensor,
    n_pairs: int,
    delta: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minority-only pairs: both members among the samples with |s - s_bar| >= delta.

    First members are drawn with replacement (a batch may hold fewer minority samples than
    pairs). A batch with fewer than two minority samples mixes what it has with majority ones.
    """
    batch = scores.shape[0]
    if batch < 2:
        raise ValueError(f"mixup needs at least 2 samples in a batch, got {batch}")
    if delta < 0:
        raise ValueError(f"the minority threshold must be >= 0, got {delta}")
    scores = scores.detach().float()
    minority = (scores - scores.mean()).abs() >= delta
    weights = torch.where(minority, 1.0, MAJORITY_WEIGHT)
    i = torch.multinomial(weights, int(n_pairs), replacement=True, generator=generator)
    j = _partners(weights, i, generator)
    return i, j, _uniform_lam(int(n_pairs), scores.device, generator)
