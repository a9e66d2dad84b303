"""Model registry (see models.toml)."""

from baselines.registry import create_model, list_models, model_config, model_entry

__all__ = ["create_model", "list_models", "model_config", "model_entry"]
