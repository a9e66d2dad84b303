"""The Swin Transformer V2 baseline ("Base." in the paper, Section 3.5 and Table 1).

As the official ELTA code: timm's Swin V2, tokens average-pooled to one feature vector, and the
EMD head Linear(D, 64)-ReLU-Linear(64, 10). The head serves scalar datasets too (their loss is
MSE on the expected score, paper Section 3.1), so APDS applies to every dataset.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from bench.data.types import NUM_BINS


class SwinV2IAA(nn.Module):
    def __init__(
        self, timm_name: str, img_size: int, timm_kwargs: dict, weights: Path | None = None
    ):
        super().__init__()
        overlay = dict(file=str(weights)) if weights is not None else None
        self.backbone = timm.create_model(
            timm_name,
            pretrained=weights is not None,
            pretrained_cfg_overlay=overlay,
            num_classes=0,  # pooled features out: global average over the tokens
            img_size=img_size,
            **timm_kwargs,
        )
        self.feature_dim = self.backbone.num_features
        self.head = nn.Sequential(
            nn.Linear(self.feature_dim, 64), nn.ReLU(), nn.Linear(64, NUM_BINS)
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build(weights: Path | None = None, **config) -> SwinV2IAA:
    """The registry's entry point (configs in models.toml)."""
    return SwinV2IAA(weights=weights, **config)
