"""The deep-imbalanced-regression methods (baselines/dir) inside a training round.

Methods are options of a run (`MethodOptions.lds`, `.fds`, `.ranksim_weight`), so they apply to
any registered model, alone, together, or with ELTA's modules. One `DIRTerms` holds a round's
state; a training step (bench/train/loop.py: training_loss) calls it where each method acts:

  LDS      every row's loss is weighted by the LDS weight of its label's score bin: 1 / the
           smoothed density of the training scores there, the table scaled to average 1 over
           the training set (Yang et al. 2021, eq. 2; `lds.bin_weights`). Mixed rows (TFA) and
           pseudo-labelled rows (APDS) are weighted by the bin of their own label score.
  FDS      the pooled feature of every row is calibrated by its label's bucket
           (`FDS.smooth`) before TFA mixes it and the head reads it; the statistics are the
           epoch's own training features of the labelled rows, detached and before
           calibration (`FDS.accumulate`), folded in when the epoch ends (`end_epoch`). The
           official code makes a second, no-grad pass over the training set in train mode at
           each epoch's end; the epoch's own features are the same kind of sample (train mode,
           augmented), from weights up to one epoch older, without that pass.
  RankSim  gamma * `ranksim.regularizer` of the labelled rows' pooled features (before FDS
           calibration: the encoder's features, as the paper) and label scores.

Buckets are the 0.1-wide bins of 10-point scores (`lds.SCORE_BIN_EDGES`, why: lds.py). The FDS
statistics belong to the round, not to the model: evaluation never calibrates (the official
`smooth` is the identity in eval), and a self-training round starts its own.
"""

from __future__ import annotations

import torch

from baselines.dir import N_SCORE_BINS, lds, ranksim
from baselines.dir.fds import FDS
from bench.data.types import Split
from bench.train.methods import MethodOptions


class DIRTerms:
    def __init__(self, opts: MethodOptions, train: Split, feature_dim: int, device: torch.device):
        self.opts = opts
        self.epoch = 0
        self.edges = torch.as_tensor(lds.SCORE_BIN_EDGES, dtype=torch.float32, device=device)
        self.lds_weights = None
        if opts.lds:
            table = lds.bin_weights(
                train.scores, lds.SCORE_BIN_EDGES, opts.lds_reweight,
                opts.lds_kernel, opts.lds_ks, opts.lds_sigma,
            )  # fmt: skip
            self.lds_weights = torch.as_tensor(table, dtype=torch.float32, device=device)
        self.fds = None
        if opts.fds:
            self.fds = FDS(
                feature_dim, N_SCORE_BINS, opts.fds_kernel, opts.fds_ks, opts.fds_sigma,
                opts.fds_momentum, opts.fds_start_update, opts.fds_start_smooth,
            ).to(device)  # fmt: skip

    def bins(self, scores: torch.Tensor) -> torch.Tensor:
        return lds.bin_index(scores.detach(), self.edges)

    def features(
        self, z: torch.Tensor, scores: torch.Tensor, n_labeled: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """FDS-calibrated features of every row and RankSim's term (None when off).
        The first `n_labeled` rows are labelled; their features feed the statistics."""
        penalty = None
        if self.opts.ranksim:
            term = ranksim.regularizer(
                z[:n_labeled], scores[:n_labeled], self.opts.ranksim_lambda, generator
            )
            penalty = self.opts.ranksim_weight * term
        if self.fds is not None:
            bucket = self.bins(scores)
            self.fds.accumulate(z[:n_labeled].detach(), bucket[:n_labeled])
            z = self.fds.smooth(z, bucket, self.epoch)
        return z, penalty

    def weights(self, scores: torch.Tensor) -> torch.Tensor | None:
        """Each row's LDS loss weight (None when LDS is off)."""
        return None if self.lds_weights is None else self.lds_weights[self.bins(scores)]

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def end_epoch(self) -> None:
        if self.fds is not None:
            self.fds.end_epoch(self.epoch)


def dir_terms(
    opts: MethodOptions, train: Split, model: torch.nn.Module, device: torch.device
) -> DIRTerms | None:
    """A round's DIR state, or None when no DIR method is on."""
    return DIRTerms(opts, train, model.feature_dim, device) if opts.uses_dir else None
