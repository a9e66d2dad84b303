"""Profiles: how big a run is. Model-specific settings (backbone size, image size) live with each
model's configs in baselines/; these are the training and data settings shared by all models.

- smoke: seconds, for tests.
- cpu:   the default; the embedded benchmark on 2 CPU cores, about a minute a training round.
- paper: the paper's protocol (Appendix A.2 and the official code): every model at its
         published size on its official recipe (baselines/models.toml); for the Swin V2
         baseline Adam 1e-5, batch 48, 20 epochs, train images resized to 300 and cropped to 256.
- rehearsal: the paper profile's models and recipes on fixture data, capped (one optimizer
         update of at most four images a stage, a learning rate of at most 1e-4, images read
         at their own size at most 512 px: `run_all.py --profile paper --rehearse`,
         bench/run/rehearsal.py): its code path end to end on a CPU, not a result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from bench.data.synth import Sizes
from iaa_common import UserError

# a rehearsal's caps: out of a stage's id when unset
OPTIONAL = ("configs", "max_steps", "max_batch", "max_lr", "max_side", "cumulative_bn")


@dataclass(frozen=True)
class Profile:
    """A profile's settings; a stage config holds them as `dataclasses.asdict` gives them."""

    name: str
    description: str
    batch_size: int
    lr: float
    epochs: int
    st_epochs: int  # the one APDS self-training round (Appendix A.2)
    resize: int | None  # image files: resized to this before the random crop
    num_workers: int  # DataLoader workers for image files
    synth_img_size: int  # the embedded benchmark is rendered at this size
    synth_sizes: Sizes
    apds_val_fraction: float  # share of the validation split used for the (beta, t) search
    apds_min_selected: int
    apds_betas: tuple[float, ...]
    apds_thresholds: tuple[float, ...]
    configs: str | None = None  # the models.toml configs it uses (None: its own name's)
    max_steps: int | None = None  # optimizer updates per stage, at most (a rehearsal)
    max_batch: int | None = None  # images per training step, at most (a rehearsal)
    max_lr: float | None = None  # learning rate, at most: one update from random initialisation
    max_side: int | None = None  # longer side of an image read at its own size (MUSIQ), at most
    # BatchNorm's running statistics as the cumulative mean of the batches seen (momentum None):
    # a model updated once evaluates with the statistics it trained with (a rehearsal; with the
    # default momentum, deep networks from random initialisation overflow in eval mode)
    cumulative_bn: bool | None = None

    def identity(self) -> dict:
        """The settings a stage's id hashes: every field, but a rehearsal's caps and configs
        name only where they are set (a profile without them keeps its stage ids)."""
        values = asdict(self)
        return {k: v for k, v in values.items() if k not in OPTIONAL or v is not None}

    @property
    def models(self) -> str:
        """The profile whose model configs (baselines/models.toml) this one runs."""
        return self.configs or self.name

    @classmethod
    def from_dict(cls, values: dict) -> Profile:
        """The profile a stage config holds (its JSON form: lists for tuples)."""
        sizes = Sizes(**values["synth_sizes"])
        betas, thresholds = tuple(values["apds_betas"]), tuple(values["apds_thresholds"])
        return cls(
            **{**values, "synth_sizes": sizes, "apds_betas": betas, "apds_thresholds": thresholds}
        )


# The official code's (commented) full grid is beta in {1.0, 1.1, 1.2, 1.25}, t in {0.70..0.90};
# the vectorised search makes a wider grid free.
BETAS = (0.25, 0.5, 0.75, 1.0, 1.1, 1.2, 1.25, 1.5, 2.0, 3.0)
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
SMOKE_THRESHOLDS = (0.1, 0.15, 0.2, 0.3, 0.5)  # barely trained models are unsure

PROFILES = {
    "smoke": Profile(
        name="smoke",
        description="seconds: tiny model and data, for tests",
        batch_size=16,
        lr=1e-3,
        epochs=2,
        st_epochs=1,
        resize=None,
        num_workers=0,
        synth_img_size=32,
        synth_sizes=Sizes(n_train=96, n_val=48, n_test=64, n_unlabeled=96),
        apds_val_fraction=0.5,
        apds_min_selected=3,
        apds_betas=BETAS,
        apds_thresholds=SMOKE_THRESHOLDS,
    ),
    "cpu": Profile(
        name="cpu",
        description="default: embedded benchmark, scaled-down Swin V2, ~1 min a round on 2 cores",
        batch_size=32,
        lr=5e-4,
        epochs=8,
        st_epochs=4,
        resize=None,
        num_workers=0,
        synth_img_size=48,
        synth_sizes=Sizes(n_train=2400, n_val=600, n_test=1000, n_unlabeled=2400),
        apds_val_fraction=0.5,
        apds_min_selected=10,
        apds_betas=BETAS,
        apds_thresholds=THRESHOLDS,
    ),
    "paper": Profile(
        name="paper",
        description="the paper's protocol: real datasets, 256 px, batch 48, Adam 1e-5, 20 epochs",
        batch_size=48,
        lr=1e-5,
        epochs=20,
        st_epochs=20,
        resize=300,
        num_workers=8,
        synth_img_size=256,
        synth_sizes=Sizes(n_train=20000, n_val=2000, n_test=5000, n_unlabeled=20000),
        apds_val_fraction=0.5,
        apds_min_selected=11,
        apds_betas=BETAS,
        apds_thresholds=THRESHOLDS,
    ),
}


PROFILES["rehearsal"] = replace(
    PROFILES["paper"],
    name="rehearsal",
    description="the paper profile's models and recipes on fixture data, one optimizer update "
    "of at most 4 images a stage: its code path on a CPU, not a result (--rehearse)",
    configs="paper",
    max_steps=1,
    max_batch=4,
    max_lr=1e-4,  # HGCN's 1e-2 and MUSIQ's 0.12 send a network from random init to overflow
    max_side=512,  # MUSIQ at the native size of PARA's 1,600-px images: 13 GB on a CPU
    num_workers=1,  # the loader workers' code path, without a worker start per core
    cumulative_bn=True,
    apds_min_selected=1,  # the fixture's validation half holds a couple of images
    apds_thresholds=SMOKE_THRESHOLDS,  # untrained models are unsure
)


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise UserError(f"unknown profile '{name}'; valid profiles: {', '.join(PROFILES)}")
    return PROFILES[name]
