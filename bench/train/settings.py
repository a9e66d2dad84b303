"""A training round's settings, built in one place: the profile's (bench/profiles.py),
overridden by the model's recipe (its config's `recipe` table in baselines/models.toml; at the
paper profile, the official code's), overridden in turn by the command line's `--recipe`.

Every recipe key is applied; `RECIPE_KEYS` lists them:

    optimizer, lr, weight_decay, momentum, nesterov, param_lr   the optimizer (adam | sgd), its
                      learning rate and one per parameter-name prefix (`param_lr`)
    batch_size, epochs, drop_last, eval_batch_size              batches: the last partial
                      training batch is dropped unless drop_last = false; evaluation batches
                      hold eval_batch_size images (default: twice the training batch), in order
    lr_step, lr_milestones, lr_gamma, schedule, warmup_epochs   the learning rate's schedule:
                      x lr_gamma every lr_step epochs, or after each of lr_milestones; schedule
                      "compound": x lr_gamma^e after epoch e (BIAA's exp_lr_scheduler), "cosine":
                      a cosine decay to 0 over every optimizer step, after a linear warm-up of
                      warmup_epochs; all stepped per epoch but cosine (per step)
    batch_fit, official_batch_size  a batch smaller than the official one: "accumulate" sums
                      the gradients of official / batch steps per update, "scale_lr" scales the
                      learning rate by batch / official (linear scaling)
    resize, interpolation           training images resized to resize x resize (bilinear or
                      bicubic) before the random crop to the model's img_size; evaluation images
                      resized to img_size x img_size with the same filter
    emd               the EMD's form: per_sample | batch_rms (bench/train/losses.py)
    amp               bf16 autocast on a GPU (true unless the recipe says false)

A profile may cap a stage (the rehearsal profile does, never a recipe): at most `max_steps`
optimizer updates (the epoch that reaches it ends there and is validated), of at most
`max_batch` images each, at learning rates of at most `max_lr`, on images read at their own size
(MUSIQ) of at most `max_side` pixels: nothing a rehearsal trains is a result.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bench.profiles import Profile
from iaa_common import UserError

if TYPE_CHECKING:  # planning reads the recipe keys without loading torch
    import torch

EMD_FORMS = ("per_sample", "batch_rms")  # bench/train/losses.py
# Recipe keys copied into TrainSettings as they are.
RECIPE_SETTINGS = (
    *("optimizer", "weight_decay", "momentum", "nesterov", "lr_step", "lr_gamma", "schedule"),
    *("warmup_epochs", "drop_last", "eval_batch_size", "interpolation", "emd", "amp"),
)
RECIPE_KEYS = (
    *RECIPE_SETTINGS,
    *("epochs", "batch_size", "lr", "resize", "param_lr", "lr_milestones"),
    *("batch_fit", "official_batch_size"),
)
SCHEDULES = ("step", "compound", "cosine")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    img_size: int
    resize: int | None
    num_workers: int
    device: torch.device
    needs: tuple[str, ...] = ()  # the model's inputs beyond pixels (bench.data.loading)
    max_side: int | None = None  # longer side of aspect-preserving input ("size" in needs)
    optimizer: str = "adam"  # adam | sgd
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    nesterov: bool = False  # sgd only
    lr_step: int | None = None  # multiply the lr by lr_gamma every lr_step epochs
    lr_milestones: tuple[int, ...] = ()  # ... or once after each of these epochs
    lr_gamma: float = 0.1
    schedule: str = "step"  # step (lr_step / lr_milestones, or none) | compound | cosine
    warmup_epochs: float = 0.0  # cosine: linear warm-up
    param_lr: dict[str, float] = field(default_factory=dict)  # name prefix -> lr (first match)
    drop_last: bool = True
    eval_batch_size: int | None = None  # None: twice the training batch
    accumulate: int = 1  # batches per optimizer update (batch_fit "accumulate")
    interpolation: str = "bilinear"  # bilinear | bicubic (image files)
    emd: str = "per_sample"  # per_sample | batch_rms
    amp: bool = True  # bf16 autocast on GPUs
    max_steps: int | None = None  # optimizer updates per stage, at most (a profile's cap)

    def capped(self, updates: int) -> bool:
        """Whether `updates` optimizer updates reach the stage's cap."""
        return self.max_steps is not None and updates >= self.max_steps

    @property
    def autocast(self) -> bool:
        return self.amp and self.device.type == "cuda"

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or 2 * self.batch_size


def usable_cores() -> int:
    """The CPU cores this process may run on, which data-loading workers never outnumber: those
    of its CPU affinity (the machine's, where the system has none), and in a Ray task or actor
    no more than the CPUs Ray gave it (at least one; Ray does not set the affinity)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    ray = sys.modules.get("ray")  # a Ray worker has imported it; no one else needs to
    if ray is not None and ray.is_initialized():
        context = ray.get_runtime_context()
        if context.worker.mode == ray.WORKER_MODE:  # a task or actor, not the driver
            given = context.get_assigned_resources().get("CPU", 0)
            cores = min(cores, max(1, int(given)))
    return cores


def train_settings(
    model_config: Mapping,
    profile: Profile,
    device: torch.device,
    *,
    epochs: int | None = None,
    needs: tuple[str, ...] = (),
) -> TrainSettings:
    """The profile's settings, overridden by the model's recipe; `epochs` None: the recipe's
    (or the profile's) round-1 epochs. `needs`: the model's per-image inputs beyond pixels."""
    recipe = dict(model_config.get("recipe", {}))
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        valid = ", ".join(RECIPE_KEYS)
        raise UserError(f"unknown recipe key(s) {', '.join(unknown)}; valid: {valid}")
    batch_size = recipe.get("batch_size", profile.batch_size)
    lr, accumulate = recipe.get("lr", profile.lr), 1
    official = recipe.get("official_batch_size", batch_size)
    if batch_size != official:
        fit = recipe.get("batch_fit")
        if fit == "accumulate":
            if official % batch_size:
                raise UserError(
                    f"batch_fit accumulate: batch {batch_size} must divide the official {official}"
                )
            accumulate = official // batch_size
        elif fit == "scale_lr":
            lr = lr * batch_size / official
        else:
            raise UserError(
                f"batch {batch_size} differs from the recipe's official {official}: say how to "
                "fit it, --recipe batch_fit=accumulate (gradient accumulation) or "
                "batch_fit=scale_lr (linear learning-rate scaling)"
            )
    settings = TrainSettings(
        epochs=epochs if epochs is not None else recipe.get("epochs", profile.epochs),
        batch_size=batch_size,
        lr=lr,
        img_size=model_config["img_size"],
        resize=recipe.get("resize", profile.resize),
        num_workers=min(profile.num_workers, usable_cores()),
        device=device,
        needs=tuple(needs),
        max_side=model_config.get("max_side"),
        param_lr=dict(recipe.get("param_lr", {})),
        lr_milestones=tuple(recipe.get("lr_milestones", ())),
        accumulate=accumulate,
        max_steps=profile.max_steps,
        **{key: recipe[key] for key in RECIPE_SETTINGS if key in recipe},
    )
    if profile.max_batch is not None and settings.batch_size > profile.max_batch:
        settings = replace(settings, batch_size=profile.max_batch, accumulate=1)
    if profile.max_lr is not None:
        capped = {prefix: min(lr, profile.max_lr) for prefix, lr in settings.param_lr.items()}
        settings = replace(settings, lr=min(settings.lr, profile.max_lr), param_lr=capped)
    if profile.max_side is not None:
        settings = replace(settings, max_side=min(settings.max_side or profile.max_side,
                                                  profile.max_side))  # fmt: skip
    if settings.emd not in EMD_FORMS:
        raise UserError(f"emd must be one of {', '.join(EMD_FORMS)} (got {settings.emd!r})")
    if settings.schedule not in SCHEDULES:
        raise UserError(
            f"schedule must be one of {', '.join(SCHEDULES)}, not {settings.schedule!r}"
        )
    if settings.interpolation not in ("bilinear", "bicubic"):
        raise UserError(
            f"interpolation must be bilinear or bicubic, not {settings.interpolation!r}"
        )
    return settings
