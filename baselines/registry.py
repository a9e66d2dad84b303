"""The model registry. `models.toml` names every model, the module that builds it and its
config per profile (configs as data); the module is imported only when a model is built, so
planning a table and rendering it never load torch. Every model has the same surface,
`baselines.surface.IAAModel` (forward_features, forward_head, feature_dim, needs), and
`create_model` checks it.

A profile's config is the model's structure (passed to the module's `build`) plus keys the
harness reads itself, which `build` never sees:

    recipe     the training recipe (bench/train/settings.py: optimizer, lr, batch, epochs,
               schedule, transforms, loss); at the paper profile the official code's, at cpu
               and smoke the profile's shared one (with the model's own learning rate)
    procedure  settings of the model's own training procedure (the model-level key
               `procedure` names it, "module:Class"; bench.train.loop.Supervised otherwise)
    pretrain   a part pre-trained by the harness before round 1 (bench.train.pretrain), e.g.
               TANet's theme network on the embedded benchmark's scene categories
    pretrained the parts the official recipe starts from a file (ImageNet backbones, TANet's
               Places365 theme network): a training run refuses to start without them
               (bench.run.dag), unless a variant gives another start
    datasets   per-dataset overrides, merged over the config for that dataset (TANet's and
               EAT's official TAD66K heads and recipes), keyed by the paper's dataset in lower
               case (the embedded stand-ins take their dataset's)

A model's `variants` (models.toml, `[<model>.variants.<name>]`: a description and a `config`
merged over the profile's config, recipe key by key) are the harness's own forms of it, chosen
by name (`--variant MODEL=NAME`): at the paper profile the default is the official form and a
variant is never applied silently (`resolve_config`).

A model module has `build(weights: dict[str, Path] | None = None, **config)` and
`WEIGHT_PARTS`, the parts it loads from local files (`--weights MODEL.PART=FILE`); the part
"auto" (`--weights MODEL=FILE`, or a bare path here) is recognised by the module from the file's
keys. The registry refuses any other part, except the one the config's `pretrain` names (the
harness loads the part it pre-trained under that name) and "model": this harness's own whole
model's state_dict as every stage stores it (results/runs/<id>/model.pt), loaded here after the
model is built. `build` gets the parts in the order of WEIGHT_PARTS ("auto" first, so that a
named part overrides what a whole file gave). Files are read by `baselines.weights`.
"""

from __future__ import annotations

import importlib
import tomllib
from functools import cache
from pathlib import Path

from baselines.surface import IAAModel, lacks
from iaa_common import UserError

REGISTRY_FILE = Path(__file__).with_name("models.toml")
HARNESS_KEYS = ("recipe", "procedure", "pretrain", "pretrained", "datasets")


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
    for variant, spec in entry.get("variants", {}).items():
        lines.append(f"--variant {name}={variant}: {spec['description']}")
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


def _merged(config: dict, overrides: dict) -> dict:
    """`overrides` over `config`; the `recipe` and `procedure` tables merged key by key."""
    merged = {**config, **overrides}
    for table in ("recipe", "procedure"):
        if table in overrides:
            merged[table] = {**config.get(table, {}), **overrides[table]}
    return merged


def resolve_config(
    name: str, profile: str, dataset: str | None = None, variants: tuple[str, ...] = ()
) -> tuple[dict, tuple[str, ...]]:
    """A model's config for a run: the profile's, its `datasets` overrides for `dataset` (the
    paper's name, lower case), then each named variant's config; and the variants that changed
    it (a variant that changes nothing is not one of this config)."""
    config = dict(model_config(name, profile))
    config = _merged(config, config.pop("datasets", {}).get(dataset, {}))
    known = model_entry(name).get("variants", {})
    applied = []
    for variant in variants:
        if variant not in known:
            raise UserError(
                f"{name} has no variant '{variant}'; its variants: {', '.join(known) or 'none'}"
            )
        changed = _merged(config, known[variant]["config"])
        if changed != config:
            config, applied = changed, [*applied, variant]
    return config, tuple(applied)


def variant_description(name: str, variant: str) -> str:
    return model_entry(name).get("variants", {}).get(variant, {}).get("description", variant)


def starts(name: str) -> list[str]:
    """The variants that start a model otherwise than from its pretrained files, as options."""
    variants = model_entry(name).get("variants", {})
    return [
        f"--variant {name}={variant}"
        for variant, spec in variants.items()
        if {"pretrained", "pretrain"} & set(spec["config"])
    ]


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


def weight_parts(name: str, config: dict) -> tuple[str, ...]:
    """The weights parts a model takes with a config: its module's WEIGHT_PARTS, the part its
    config pre-trains, and "model" (module docstring)."""
    pretrain = config.get("pretrain", {}).get("part")
    parts = (*getattr(model_module(name), "WEIGHT_PARTS", ()), pretrain, "model")
    return tuple(dict.fromkeys(part for part in parts if part is not None))


def create_model(
    name: str,
    profile: str,
    weights: dict[str, Path | str] | Path | str | None = None,
    config: dict | None = None,
) -> IAAModel:
    """Build a registered model for a profile (or from `config`, a run's resolved config:
    `resolve_config`), with weights from local files: a dict of part name -> file, or one file
    (the part "auto", recognised by its keys). UserError for an unknown part, a missing file,
    or a module whose model lacks part of the surface."""
    config = model_config(name, profile) if config is None else config
    parts = _as_parts(weights)
    accepted = weight_parts(name, config)
    for part, path in parts.items():
        if part not in accepted:
            raise UserError(
                f"{path}: unknown weights part '{part}' for model '{name}' "
                f"(its parts: {', '.join(accepted)})"
            )
        if not path.is_file():
            raise UserError(f"{path}: weights file not found (model '{name}', part '{part}')")
    ordered = {part: parts[part] for part in accepted if part in parts and part != "model"}
    structure = {k: v for k, v in config.items() if k not in HARNESS_KEYS}
    module = model_module(name)
    model = module.build(weights=ordered or None, **structure)
    missing = lacks(model)
    if missing:
        raise UserError(
            f"model '{name}' ({module.__name__}) lacks {', '.join(missing)}: "
            "see baselines/surface.py"
        )
    if "model" in parts:
        from baselines.weights import load_checked, read_state_dict

        path = parts["model"]
        what = f"a '{name}' model saved by this harness"
        load_checked(model, read_state_dict(path), path, what)
    return model
