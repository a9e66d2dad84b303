"""The Swin Transformer V2 baseline ("Base." in the paper, Section 3.5 and Table 1).

As the official ELTA code: timm's Swin V2, tokens average-pooled to one feature vector, and the
EMD head Linear(D, 64)-ReLU-Linear(64, 10). The head serves scalar datasets too (their loss is
MSE on the expected score, paper Section 3.1), so APDS applies to every dataset.

The pooled feature is the average of the last stage's tokens (timm's `num_classes=0` output),
the vector the official code's `features` return and its mixup and similarity loss act on.

Input statistics: timm's pretrained config of the variant, converted from the harness's ImageNet
normalisation only where they differ (`baselines.maxvit.VariantInput`); the variants used
(`swinv2_base_window8_256`, `swinv2_tiny_window8_256`) have ImageNet's, so no conversion.

Weights: one part, the backbone, in timm's layout (an ImageNet `swinv2_base_window8_256` file;
`--weights swinv2=FILE` or `swinv2.backbone=FILE`).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from baselines.maxvit import VariantInput
from baselines.weights import load_timm_backbone
from iaa_common import NUM_BINS


class SwinV2IAA(nn.Module):
    needs: tuple[str, ...] = ()
    output = "logits"

    def __init__(
        self, timm_name: str, img_size: int, timm_kwargs: dict, weights: Path | None = None
    ):
        super().__init__()
        self.backbone = timm.create_model(
            timm_name,
            num_classes=0,  # pooled features out: global average over the tokens
            img_size=img_size,
            **timm_kwargs,
        )
        if weights is not None:
            load_timm_backbone(self.backbone, weights, f"timm {timm_name}")
        self.feature_dim = self.backbone.num_features
        self.input_norm = VariantInput(self.backbone.pretrained_cfg)
        self.head = nn.Sequential(
            nn.Linear(self.feature_dim, 64), nn.ReLU(), nn.Linear(64, NUM_BINS)
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.input_norm(x))

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


WEIGHT_PARTS = ("auto", "backbone")  # both: the ImageNet backbone


def build(weights: dict[str, Path] | None = None, **config) -> SwinV2IAA:
    """The registry's entry point (configs in models.toml)."""
    parts = weights or {}
    return SwinV2IAA(weights=parts.get("backbone", parts.get("auto")), **config)
