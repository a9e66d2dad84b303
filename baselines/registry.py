"""The model registry. `models.toml` names every model, the module that builds it and its
config per profile (configs as data); the module is imported only when a model is built, so
planning a table and rendering it never load torch. Every model has the same surface:

    forward_features(x) -> (B, D) pooled feature   (TFA, FLSA, FDS and RankSim act on it)
    forward_head(z)     -> (B, 10) logits over the rating bins
    feature_dim         -> D
"""

from __future__ import annotations

import importlib
import tomllib
from functools import cache
from pathlib import Path

from bench.errors import UserError

REGISTRY_FILE = Path(__file__).with_name("models.toml")


@cache
def _registry() -> dict[str, dict]:
    return tomllib.loads(REGISTRY_FILE.read_text())


def list_models() -> dict[str, str]:
    """Model name -> description."""
    return {name: entry["description"] for name, entry in _registry().items()}


def model_config(name: str, profile: str) -> dict:
    """The config of a model under a profile (UserError for unknown names)."""
    if name not in _registry():
        raise UserError(f"unknown model '{name}'; valid models: {', '.join(sorted(_registry()))}")
    configs = _registry()[name]["configs"]
    if profile not in configs:
        raise UserError(f"model '{name}' has no config for profile '{profile}'")
    return configs[profile]


def create_model(name: str, profile: str, weights: Path | None = None):
    """Build a registered model for a profile, with backbone weights from a local file."""
    config = model_config(name, profile)
    if weights is not None and not Path(weights).is_file():
        raise UserError(f"{weights}: weights file not found (model '{name}')")
    module = importlib.import_module(_registry()[name]["module"])
    return module.build(weights=weights, **config)
