"""Planning: the stages a run is made of and their identities. Pure Python (no torch), so
that listing, dry runs and re-rendering cached tables start in an instant.

A stage's id is the hash of its canonical config, which includes its parent's config, so runs
that share a prefix (Table 4's rows with and without APDS) share the stored round 1:

    pretrain   a model part the harness pre-trains before round 1 when no file gives it (TANet's
               theme network on the embedded benchmark's scene categories); one per dataset,
               model config and profile, shared by every seed and method, as a file would be
    round1     train (with TFA / FLSA if asked), evaluate the best-on-validation checkpoint
    selftrain  APDS search on validation, pseudo-labels for the pool, one self-training round
    evaluate   no training: a trained checkpoint (a released model) evaluated on test
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from baselines.registry import model_entry, resolve_config, starts
from bench.data.registry import data_identity, paper_dataset
from bench.profiles import get_profile
from bench.train.methods import MethodOptions
from iaa_common import UserError

STAGE_FORMAT = 2  # bump when what a stage computes changes, so old results are not reused
# 2: every recipe key applied (per-model losses and heads, transforms, schedules), variants


class Stage:
    def __init__(self, kind: str, config: dict, parent: Stage | None = None):
        self.kind, self.config, self.parent = kind, config, parent
        canonical = json.dumps(config, sort_keys=True, default=str)
        self.id = hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def depth(self) -> int:
        """0 for a stage without a parent, else 1 + its parent's (the runner's waves)."""
        return 0 if self.parent is None else 1 + self.parent.depth

    def __repr__(self) -> str:
        return f"Stage({self.kind}, {self.id})"


@dataclass(frozen=True)
class RunRequest:
    dataset: str
    model: str
    profile: str
    seed: int
    options: MethodOptions
    data_root: str | None = None
    weights: dict[str, str] | None = None  # part -> local file ("auto": recognised by keys)
    eval_only: bool = False  # evaluate `weights` on test, no training
    recipe: dict | None = None  # over the model config's recipe (--recipe, bench.dev.choose)
    unlabeled: str | None = None  # an image folder for a real dataset's APDS pool (--unlabeled)
    variants: tuple[str, ...] = ()  # the model's named variants (baselines/models.toml)


def stages_for(run: RunRequest) -> list[Stage]:
    """The chain of stages of one run, the last one holding its final metrics."""
    profile = get_profile(run.profile)
    config, variants = resolve_config(
        run.model, profile.models, paper_dataset(run.dataset).lower(), run.variants
    )
    if run.recipe:
        config = {**config, "recipe": {**config.get("recipe", {}), **run.recipe}}
    where = {
        "format": STAGE_FORMAT,
        "dataset": run.dataset,
        "data": data_identity(run.dataset, profile),
        "data_root": None if run.dataset.startswith("synth-") else run.data_root,
        "model": run.model,
        "model_config": config,
    }
    if variants:
        where["variants"] = list(variants)
    if run.unlabeled and not run.dataset.startswith("synth-"):
        where["unlabeled"] = run.unlabeled
    if run.eval_only:
        config = {**where, "weights": run.weights, "profile": profile.identity()}
        return [Stage("evaluate", {"stage": "evaluate", **config})]

    _check_pretrained(run, config)
    pretrain = None
    part = config.get("pretrain", {}).get("part")
    if part is not None and part not in (run.weights or {}):
        # pre-training reads the model's structure and the profile, not its recipe
        structure = {k: v for k, v in config.items() if k not in ("recipe", "procedure")}
        pretrain_config = {**where, "model_config": structure, "profile": profile.identity()}
        pretrain = Stage("pretrain", {"stage": "pretrain", **pretrain_config})
    round1_config = {
        "format": STAGE_FORMAT,
        "stage": "round1",
        **where,
        "weights": run.weights,
        "profile": profile.identity(),
        "seed": run.seed,
        "method": run.options.round1_dict(),
    }
    if pretrain is not None:
        round1_config["pretrain"] = pretrain.config
    round1 = Stage("round1", round1_config, parent=pretrain)
    if not run.options.apds:
        return [stage for stage in (pretrain, round1) if stage is not None]
    apds_config = {key: value for key, value in asdict(profile).items() if key.startswith("apds_")}
    selftrain = Stage(
        "selftrain",
        {"stage": "selftrain", "parent": round1.config, "apds": apds_config},
        parent=round1,
    )
    return [stage for stage in (pretrain, round1, selftrain) if stage is not None]


def _check_pretrained(run: RunRequest, config: dict) -> None:
    """UserError when the model's official recipe starts from a pretrained part (its config's
    `pretrained` list, at the paper profile) and no file, whole model or pre-training stage
    gives it."""
    given = set(run.weights or {})
    for part in config.get("pretrained", ()):
        if given & {part, "auto", "model"} or config.get("pretrain", {}).get("part") == part:
            continue
        what = model_entry(run.model)["weights"].get(part, "its file")
        raise UserError(
            f"{run.model} at profile {run.profile} starts from its pretrained {part} ({what}): "
            f"give --weights {run.model}.{part}=FILE, or ask for another start by name "
            f"({', '.join(starts(run.model)) or 'none exists'})"
        )


@dataclass(frozen=True)
class Context:
    """How to execute (never part of a stage's identity)."""

    results: Path
    device: str
    # The runner's process: a local worker exits when it is gone (bench.run.runner.exit_with)
    runner_pid: int | None = None

    @property
    def cache_dir(self) -> Path:
        return self.results / "cache"
