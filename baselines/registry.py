"""The model registry. `models.toml` names every model, the module that builds it and its
config per profile (configs as data); the module is imported only when a model is built, so
planning a table and rendering it never load torch. Every model has the same surface:

    forward_features(x, **extras) -> (B, D) pooled feature (TFA, FLSA, FDS and RankSim act on it)
    forward_head(z)               -> (B, 10) logits over the rating bins
    feature_dim                   -> D
    needs                         -> the per-image inputs beyond pixels it takes as `extras`
                                     ("aspect", "size": bench.data.loading)

A profile's config is the model's structure (passed to the module's `build`) plus three keys
the harness reads itself:

    recipe     the training recipe (bench.run.stages: optimizer, lr, batch, epochs, schedule);
               at the paper profile the official code's, elsewhere the profile's
    procedure  settings of the model's own training procedure (the model-level key
               `procedure` names it, "module:Class"; bench.train.Supervised otherwise)
    pretrain   a part pre-trained by the harness before round 1 (bench.train.pretrain), e.g. TANet's
               theme network on the embedded benchmark's scene categories

Weights come from local files, one per named part (`--weights MODEL.PART=FILE`); the part
"auto" (`--weights MODEL=FILE`) is recognised by the module from the file's keys. The part
"model" is this harness's own: a whole model's state_dict as every stage stores it
(results/runs/<id>/model.pt), loaded here after the model is built.
"""

from __future__ import annotations

import importlib
import tomllib
from functools import cache
from pathlib import Path

from iaa_common import UserError

REGISTRY_FILE = Path(__file__).with_name("models.toml")
HARNESS_KEYS = ("recipe", "procedure", "pretrain")


@cache
def _registry() -> dict[str, dict]:
    return tomllib.loads(REGISTRY_FILE.read_text())


def list_models() -> dict[str, str]:
    """Model name -> description."""
    return {name: entry["description"] for name, entry in _registry().items()}


def describe_model(name: str) -> list[str]:
    """What --list says of a model beyond its description: needs, weight parts, procedure."""
    entry = model_entry(name)
    lines = [f"needs beyond pixels: {', '.join(entry['needs']) or 'nothing'}"]
    for part, what in entry["weights"].items():
        target = name if part == "auto" else f"{name}.{part}"
        lines.append(f"--weights {target}=FILE: {what}")
    if "procedure" in entry:
        lines.append(f"trains with its own procedure: {entry['procedure']}")
    return lines


def model_entry(name: str) -> dict:
    """A model's registry entry: description, module, optional procedure, configs."""
    if name not in _registry():
        raise UserError(f"unknown model '{name}'; valid models: {', '.join(sorted(_registry()))}")
    return _registry()[name]


def model_config(name: str, profile: str) -> dict:
    """The config of a model under a profile (UserError for unknown names)."""
    configs = model_entry(name)["configs"]
    if profile not in configs:
        raise UserError(f"model '{name}' has no config for profile '{profile}'")
    return configs[profile]


def model_module(name: str):
    """The module that builds a model (imported now: it loads torch)."""
    return importlib.import_module(model_entry(name)["module"])


def procedure_class(name: str):
    """The class of a model's own training procedure, or None for the standard one."""
    target = model_entry(name).get("procedure")
    if target is None:
        return None
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def create_part(name: str, part: str, config: dict):
    """A model's pre-trainable part, built alone from the model's structure (`config`, harness
    keys ignored) by its module's `<part>_network`: e.g. TANet's theme network."""
    structure = {k: v for k, v in config.items() if k not in HARNESS_KEYS}
    return getattr(model_module(name), f"{part}_network")(**structure)


def _as_parts(weights: dict[str, Path | str] | Path | str | None) -> dict[str, Path]:
    if weights is None:
        return {}
    if not isinstance(weights, dict):
        weights = {"auto": weights}
    return {part: Path(path) for part, path in weights.items()}


def create_model(
    name: str, profile: str, weights: dict[str, Path | str] | Path | str | None = None
):
    """Build a registered model for a profile, with weights from local files: a dict of part
    name -> file, or one file (the part "auto", recognised by its keys)."""
    config = model_config(name, profile)
    parts = _as_parts(weights)
    for part, path in parts.items():
        if not path.is_file():
            raise UserError(f"{path}: weights file not found (model '{name}', part '{part}')")
    build_config = {k: v for k, v in config.items() if k not in HARNESS_KEYS}
    whole = parts.pop("model", None)
    model = model_module(name).build(weights=parts or None, **build_config)
    if whole is not None:
        _load_whole(model, whole, name)
    return model


def _load_whole(model, path: Path, name: str) -> None:
    """Load a whole-model state_dict saved by this harness (UserError naming the file)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as err:  # unreadable file, wrong keys or shapes: one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a '{name}' model saved by this harness ({first})") from None
