"""The model registry: every IAA model is one file with its configs (as data, one per profile)
and one `@register_model` builder. Every model has the same surface (DESIGN.md):

    forward_features(x) -> (B, D) pooled feature   (TFA, FLSA, FDS and RankSim act on it)
    forward_head(z)     -> (B, 10) logits over the rating bins
    feature_dim         -> D
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from bench.errors import UserError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    configs: dict[str, dict]  # profile name -> keyword arguments of the builder
    builder: Callable[..., nn.Module]


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, description: str, configs: dict[str, dict]):
    """Decorator registering `builder(weights: Path | None, **config) -> nn.Module`."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = ModelEntry(name, description, configs, builder)
        return builder

    return wrap


def list_models() -> dict[str, ModelEntry]:
    return dict(_MODELS)


def model_config(name: str, profile: str) -> dict:
    """The config of a model under a profile (UserError for unknown names)."""
    if name not in _MODELS:
        raise UserError(f"unknown model '{name}'; valid models: {', '.join(sorted(_MODELS))}")
    configs = _MODELS[name].configs
    if profile not in configs:
        raise UserError(f"model '{name}' has no config for profile '{profile}'")
    return configs[profile]


def create_model(name: str, profile: str, weights: Path | None = None) -> nn.Module:
    """Build a registered model for a profile, with backbone weights from a local file."""
    config = model_config(name, profile)
    if weights is not None and not Path(weights).is_file():
        raise UserError(f"{weights}: weights file not found (model '{name}')")
    return _MODELS[name].builder(weights=weights, **config)
