"""A training round's settings, built in one place: the profile's (bench/profiles.py),
overridden by the model's recipe (its config's `recipe` table in baselines/models.toml; at the
paper profile, the official code's optimizer, learning rate, batch, epochs and schedule).

`train_settings` is the only place where a recipe is read; `RECIPE_KEYS` lists every key a
recipe may have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from bench.profiles import Profile

# Recipe keys copied into TrainSettings as they are.
RECIPE_SETTINGS = ("optimizer", "weight_decay", "momentum", "nesterov", "lr_step", "lr_gamma")
RECIPE_KEYS = (
    *RECIPE_SETTINGS,
    *("epochs", "batch_size", "lr", "resize", "param_lr", "lr_milestones"),  # read below
    *("loss", "transform", "source"),  # documentation: what the official code does
)


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
    param_lr: dict[str, float] = field(default_factory=dict)  # name prefix -> lr (first match)

    @property
    def amp(self) -> bool:
        return self.device.type == "cuda"  # bf16 autocast on GPUs


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
    recipe = model_config.get("recipe", {})
    return TrainSettings(
        epochs=epochs if epochs is not None else recipe.get("epochs", profile.epochs),
        batch_size=recipe.get("batch_size", profile.batch_size),
        lr=recipe.get("lr", profile.lr),
        img_size=model_config["img_size"],
        resize=recipe.get("resize", profile.resize),
        num_workers=profile.num_workers,
        device=device,
        needs=tuple(needs),
        max_side=model_config.get("max_side"),
        param_lr=dict(recipe.get("param_lr", {})),
        lr_milestones=tuple(recipe.get("lr_milestones", ())),
        **{key: recipe[key] for key in RECIPE_SETTINGS if key in recipe},
    )
