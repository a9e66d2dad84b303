"""Feature-Label Similarity Alignment (FLSA), paper Section 3.3.

  eq. 5   M^f_ij = cos(z_i, z_j)
  eq. 6   M^l_ij = 1 - |s_i - s_j| / (max_k s_k - min_k s_k)
  loss    = MSE(M^f, M^l), over the full B x B matrices (diagonal included, as the official code)

When every score in the batch is equal, eq. 6 is 0/0; all pairs then share a label, so M^l = 1
(the paper: "M^l_ij = 1 signifies pairs that share identical labels"). We get that by
flooring the score range at a tiny epsilon.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RANGE_EPS = 1e-8


def feature_similarity(features: torch.Tensor) -> torch.Tensor:
    """Eq. 5: the (B, B) cosine-similarity matrix of pooled features (B, D)."""
    unit = F.normalize(features.float(), dim=1)
    return unit @ unit.T


def label_similarity(scores: torch.Tensor) -> torch.Tensor:
    """Eq. 6: the (B, B) label-similarity matrix of label scores (B,)."""
    scores = scores.detach().float()
    spread = (scores.max() - scores.min()).clamp_min(RANGE_EPS)
    return 1 - (scores[:, None] - scores[None, :]).abs() / spread


def alignment_loss(features: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """MSE between the feature- and label-similarity matrices (Section 3.3)."""
    return F.mse_loss(feature_similarity(features), label_similarity(scores))
