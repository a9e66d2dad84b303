"""A tiny registry entry with every hook a baseline may use, for the harness's tests: a per-image
input beyond pixels (`needs`), a part the harness pre-trains (`theme_network`), and a training
procedure of its own (`Recording`, the standard one that also records what it was given)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bench.train.loop import Supervised

TOY_ENTRY = {
    "description": "toy model for tests",
    "module": "tests.toy_model",
    "procedure": "tests.toy_model:Recording",
    "configs": {
        "smoke": {
            "img_size": 32,
            "width": 8,
            "theme_classes": 10,
            "pretrain": {"part": "theme", "epochs": 2},
            "procedure": {"note": "from models.toml"},
        }
    },
}


class _Theme(nn.Module):
    def __init__(self, width: int, theme_classes: int):
        super().__init__()
        self.num_classes = theme_classes
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(width, theme_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


def theme_network(img_size: int, width: int, theme_classes: int) -> nn.Module:
    return _Theme(width, theme_classes)


class Toy(nn.Module):
    needs = ("aspect",)

    def __init__(self, img_size: int, width: int, theme_classes: int, theme: Path | None):
        super().__init__()
        self.theme = _Theme(width, theme_classes).requires_grad_(False)
        if theme is not None:
            self.theme.load_state_dict(torch.load(theme, weights_only=True))
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.feature_dim = width + theme_classes + 1
        self.head = nn.Linear(self.feature_dim, 10)

    def forward_features(self, x: torch.Tensor, aspect: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x).flatten(1), self.theme(x), aspect[:, None]], 1)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def forward(self, x: torch.Tensor, aspect: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, aspect))


def build(weights: dict[str, Path] | None = None, **config) -> Toy:
    return Toy(theme=(weights or {}).get("theme"), **config)


class Recording(Supervised):
    calls: list[tuple[int, str]] = []  # (epoch, note) of every epoch trained in this process

    def __init__(self, model, train, pseudo, opts, settings, seed, note: str):
        super().__init__(model, train, pseudo, opts, settings, seed)
        self.note = note

    def epoch(self, epoch: int) -> torch.Tensor:
        Recording.calls.append((epoch, self.note))
        return super().epoch(epoch)
