"""Method options of a run (DESIGN.md: methods are options of a run, not model subclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

from bench.errors import UserError

# Mixed pairs appended per batch. The paper does not say; the official code mixes 1 of 48.
# Chosen on the validation split of synth-ava (README, "Choosing the number of mixed pairs").
TFA_PAIRS_DEFAULT = 4
SAMPLINGS = ("elta", "random", "threshold")


@dataclass(frozen=True)
class MethodOptions:
    tfa: bool = False
    tfa_level: Literal["feature", "pixel"] = "feature"  # pooled feature, or input images (k=0)
    tfa_pairs: int = TFA_PAIRS_DEFAULT
    # Pair sampling: ELTA's eqs. 2-4, or Section 4.4's ablations (bench/mixup_sampling.py)
    tfa_sampling: Literal["elta", "random", "threshold"] = "elta"
    tfa_threshold: float = 1.0  # minority: |s - s_bar| >= this (tfa_sampling="threshold")
    tau1: float = 0.2  # Figure 5's optimum
    tau2: float = 4.0
    flsa_weight: float = 0.0  # 0 turns FLSA off
    apds: bool = False
    emd_form: Literal["per_sample", "batch_rms"] = "per_sample"

    def __post_init__(self) -> None:
        if not (self.tau1 > 0 and self.tau2 > 0):
            raise UserError(
                f"TFA temperatures must be > 0 (got tau1={self.tau1}, tau2={self.tau2})"
            )
        if self.tfa_pairs < 1:
            raise UserError(f"--tfa-pairs must be >= 1 (got {self.tfa_pairs})")
        if self.flsa_weight < 0:
            raise UserError(f"--flsa-weight must be >= 0 (got {self.flsa_weight})")
        if self.tfa_level not in ("feature", "pixel"):
            raise UserError(f"tfa_level must be 'feature' or 'pixel' (got {self.tfa_level!r})")
        if self.tfa_sampling not in SAMPLINGS:
            raise UserError(
                f"tfa_sampling must be one of {', '.join(SAMPLINGS)} (got {self.tfa_sampling!r})"
            )
        if self.tfa_threshold < 0:
            raise UserError(f"tfa_threshold must be >= 0 (got {self.tfa_threshold})")
        if self.emd_form not in ("per_sample", "batch_rms"):
            raise UserError(f"--emd must be 'per_sample' or 'batch_rms' (got {self.emd_form!r})")

    def round1_dict(self) -> dict:
        """The options that shape the first round (APDS only acts afterwards). Options of a
        module that is off are dropped, so they never split the cache."""
        out = {k: v for k, v in asdict(self).items() if k != "apds"}
        unused = {
            "elta": ("tfa_sampling", "tfa_threshold"),
            "random": ("tau1", "tau2", "tfa_threshold"),
            "threshold": ("tau1", "tau2"),
        }[self.tfa_sampling]
        if not self.tfa:
            unused = ("tfa_level", "tfa_pairs", "tau1", "tau2", "tfa_sampling", "tfa_threshold")
        for key in unused:
            out.pop(key)
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
