"""Model registry. Importing the package registers every model family."""

from baselines import swinv2  # noqa: F401  (registers the model)
from baselines.registry import create_model, list_models, model_config, register_model

__all__ = ["create_model", "list_models", "model_config", "register_model"]
