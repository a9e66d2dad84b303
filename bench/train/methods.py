"""Method options of a run: methods are options of a run, not model subclasses (docs/DESIGN.md,
"Adding things")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

from iaa_common import UserError

# Mixed pairs appended per batch. The paper does not say; the official code mixes 1 of 48.
# Chosen on the validation split of synth-ava (README, "Choosing the number of mixed pairs").
TFA_PAIRS_DEFAULT = 4
SAMPLINGS = ("elta", "random", "threshold")


@dataclass(frozen=True)
class MethodOptions:
    tfa: bool = False
    tfa_level: Literal["feature", "pixel"] = "feature"  # pooled feature, or input images (k=0)
    tfa_pairs: int = TFA_PAIRS_DEFAULT
    # Pair sampling: ELTA's eqs. 2-4, or Section 4.4's ablations (bench/train/mixup_sampling.py)
    tfa_sampling: Literal["elta", "random", "threshold"] = "elta"
    tfa_threshold: float = 1.0  # minority: |s - s_bar| >= this (tfa_sampling="threshold")
    tau1: float = 0.2  # Figure 5's optimum
    tau2: float = 4.0
    flsa_weight: float = 0.0  # 0 turns FLSA off
    apds: bool = False
    # Deep imbalanced regression (baselines/dir, bench/train/dir_terms.py), the official defaults
    lds: bool = False  # Label Distribution Smoothing: loss weights from the smoothed label density
    lds_kernel: str = "gaussian"
    lds_ks: int = 5
    lds_sigma: float = 2.0
    lds_reweight: str = "sqrt_inv"
    fds: bool = False  # Feature Distribution Smoothing: calibrate the pooled feature
    fds_kernel: str = "gaussian"
    fds_ks: int = 5
    fds_sigma: float = 2.0
    fds_momentum: float = 0.9
    fds_start_update: int = 0
    fds_start_smooth: int = 1
    ranksim_weight: float = 0.0  # RankSim's gamma; 0 turns it off
    ranksim_lambda: float = 2.0  # the blackbox rank's interpolation lambda

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
        self._check_dir()

    def _check_dir(self) -> None:
        from baselines.dir import N_SCORE_BINS, check_settings

        # fmt: off
        checks = {"RankSim (--ranksim-*)": dict(gamma=self.ranksim_weight,
                                                interpolation_lambda=self.ranksim_lambda)}
        if self.lds:
            checks["LDS (--lds-*)"] = dict(kernel=self.lds_kernel, ks=self.lds_ks,
                                           sigma=self.lds_sigma, n_buckets=N_SCORE_BINS,
                                           reweight=self.lds_reweight)
        if self.fds:
            checks["FDS (--fds-*)"] = dict(kernel=self.fds_kernel, ks=self.fds_ks,
                                           sigma=self.fds_sigma, n_buckets=N_SCORE_BINS,
                                           momentum=self.fds_momentum)
        # fmt: on
        for method, settings in checks.items():
            try:
                check_settings(**settings)
            except ValueError as err:
                raise UserError(f"{method}: {err}") from None
        if self.fds and not 0 <= self.fds_start_update <= self.fds_start_smooth:
            raise UserError("FDS needs 0 <= start_update <= start_smooth")

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
        # The DIR methods, off, leave no trace (stage ids from before they existed stay valid).
        for method, on in (("lds", self.lds), ("fds", self.fds), ("ranksim", self.ranksim)):
            if not on:
                for key in [k for k in out if k == method or k.startswith(f"{method}_")]:
                    out.pop(key)
        return out

    @property
    def ranksim(self) -> bool:
        return self.ranksim_weight > 0

    @property
    def uses_dir(self) -> bool:
        """Whether any deep-imbalanced-regression method is on."""
        return self.lds or self.fds or self.ranksim

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
