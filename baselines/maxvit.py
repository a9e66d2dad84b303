"""MaxViT (Tu et al., ECCV 2022) as an IAA model: timm's MaxxVit with a 10-bin head.

The paper does not say which MaxViT it trained; the tiny one (`maxvit_tiny_tf_224`, MaxViT-T,
30.4M parameters with a 10-way head) is the common choice in IAA work and is used at the
`paper` profile. There is no public IAA code for MaxViT: the head and recipe are ELTA's for its
Swin V2 baseline (Adam 1e-5, batch 48, 20 epochs), the input the model's 224 px.

Structure (timm): a two-conv stem, then four stages of MaxViT blocks, each an MBConv (with
squeeze-excitation) followed by block attention over non-overlapping windows and grid
attention over a dilated grid; window and grid are img_size // 32 on a side. Head: timm's
`NormMlpClassifierHead`, global average pool -> LayerNorm -> Linear(512, 512) + tanh ->
Linear(512, 10).

Pooled feature (where ELTA's TFA and FLSA attach): timm's pre-logits, the 512-d output of the
head's Linear + tanh, i.e. `forward_head(x, pre_logits=True)`: the last vector before the
10-bin classifier, the analogue of the pooled feature the official ELTA code mixes on Swin V2.

Input statistics: those of timm's pretrained config of the variant (`pretrained_cfg` mean and
std: what its ImageNet weights were trained on), never a convention of the family. The harness
feeds ImageNet-normalised images, so the model converts them (`VariantInput`) only when the
variant's statistics differ: `maxvit_tiny_tf_224.in1k` (every profile) has ImageNet's mean/std,
so no conversion; e.g. `maxvit_tiny_tf_384.in1k` has mean = std = 0.5 (inputs in [-1, 1]) and
gets x * std_imagenet / 0.5 + (mean_imagenet - 0.5) / 0.5. Swin V2 uses the same class.

`cpu` profile: the same blocks, narrower and one per stage, at 64 px. Window and grid
partitions are img_size // 32 pixels on a side: at the embedded benchmark's 48 px they would be
1 x 1 (attention over a single token, degenerate), and 48 px feature maps (24, 12, 6, 3, 2)
admit no larger partition; at 64 px they are 2 x 2 in every stage. So MaxViT (and EAT, for its
own reason) sees the 48 px images upsampled to 64 px (bench.data.loading resizes to each model's
`img_size`).

Weights: `--weights maxvit=FILE` (or `maxvit.backbone=FILE`), an ImageNet file in timm's layout;
its 1000-way classifier is dropped and the 10-way one initialised (baselines/weights.py).
No trained IAA MaxViT was released.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from baselines.weights import load_timm_backbone
from iaa_common import IMAGENET_MEAN, IMAGENET_STD, NUM_BINS


class VariantInput(nn.Module):
    """ImageNet-normalised input (the harness's) -> normalised with a timm variant's pretrained
    mean/std: (x std_in + mean_in - mean) / std = x * (std_in / std) + (mean_in - mean) / std.
    No operation at all when the variant's statistics are ImageNet's."""

    def __init__(self, pretrained_cfg: dict):
        super().__init__()
        mean = tuple(pretrained_cfg.get("mean", IMAGENET_MEAN))  # timm's default when absent
        std = tuple(pretrained_cfg.get("std", IMAGENET_STD))
        self.converts = (mean, std) != (IMAGENET_MEAN, IMAGENET_STD)
        if self.converts:
            mean_in, std_in = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
            mean_t, std_t = torch.tensor(mean), torch.tensor(std)
            scale, shift = std_in / std_t, (mean_in - mean_t) / std_t
            self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
            self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift if self.converts else x


class MaxViTIAA(nn.Module):
    needs: tuple[str, ...] = ()
    output = "logits"

    def __init__(
        self,
        timm_name: str,
        img_size: int,
        timm_kwargs: dict,
        weights: Path | None = None,
    ):
        super().__init__()
        self.backbone = timm.create_model(
            timm_name, num_classes=NUM_BINS, img_size=img_size, **timm_kwargs
        )
        if weights is not None:
            load_timm_backbone(self.backbone, weights, f"timm {timm_name}")
        self.feature_dim = self.backbone.head.fc.in_features
        self.input_norm = VariantInput(self.backbone.pretrained_cfg)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d pre-logits vector (at paper; 64 at cpu), see the module docstring."""
        x = self.input_norm(x)
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.backbone.head.fc(self.backbone.head.drop(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


WEIGHT_PARTS = ("auto", "backbone")  # both: the ImageNet backbone


def build(weights: dict[str, Path] | None = None, **config) -> MaxViTIAA:
    """The registry's entry point (configs in models.toml)."""
    parts = weights or {}
    return MaxViTIAA(weights=parts.get("backbone", parts.get("auto")), **config)
