"""One training round, read top to bottom: batches -> features -> [TFA] -> head -> loss [+ FLSA].

The same round serves the first training and the APDS self-training round (eq. 10): with a
pseudo-labelled split, every step also draws a pseudo-labelled batch, and the loss is
L_s (mean over labelled and mixed rows) + L_u (mean over pseudo-labelled rows).
The checkpoint kept is the epoch with the best validation SRCC; the test set is never looked at.

An epoch is a `Procedure`: `Supervised` (shuffled mini-batches, one optimizer step each) for
every model but those whose method is a training procedure of its own (BIAA's bilevel
meta-learning, `baselines/biaa.py`), which calls the same `training_loss`, so ELTA's modules
plug into it unchanged. The optimizer and the learning-rate schedule follow the model's
recipe (`TrainSettings`): Adam at the profile's learning rate unless a recipe says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bench.data.loading import Batch, batches
from bench.data.types import Split
from bench.train import mixup_sampling
from bench.train.dir_terms import DIRTerms, dir_terms
from bench.train.losses import EmdForm, Output, batch_loss, predicted_scores
from bench.train.methods import MethodOptions
from bench.train.metrics import evaluate
from bench.train.settings import TrainSettings
from elta import flsa, tfa
from elta.apds import expected_score


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """The recipe's optimizer over the trainable parameters, one group per learning rate."""
    groups: dict[float, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            prefix = next((p for p in settings.param_lr if name.startswith(p)), None)
            groups.setdefault(settings.param_lr.get(prefix, settings.lr), []).append(param)
    params = [{"params": group, "lr": lr} for lr, group in groups.items()]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=settings.lr,
            momentum=settings.momentum,
            nesterov=settings.nesterov,
            weight_decay=settings.weight_decay,
        )
    return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)


@dataclass
class RoundResult:
    state: dict[str, torch.Tensor]  # weights of the best epoch, on the CPU
    best_epoch: int
    curve: pd.DataFrame


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of a model's weights on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def label_scores(targets: torch.Tensor) -> torch.Tensor:
    """Scores of (B, C) distributions (sum_j j p_j) or of (B,) scalar targets."""
    return expected_score(targets) if targets.dim() == 2 else targets


def _mixup_pairs(scores: torch.Tensor, opts: MethodOptions, generator: torch.Generator):
    """(i, j, lam) of the pairs to mix: TFA's sampling (eqs. 2-4) or a Section 4.4 ablation."""
    if opts.tfa_sampling == "random":
        return mixup_sampling.random_pairs(scores, opts.tfa_pairs, generator)
    if opts.tfa_sampling == "threshold":
        return mixup_sampling.threshold_pairs(scores, opts.tfa_pairs, opts.tfa_threshold, generator)
    return tfa.sample_pairs(scores, opts.tfa_pairs, opts.tau1, opts.tau2, generator)


def _mix_extras(extras: dict[str, torch.Tensor], i, j, lam) -> dict[str, torch.Tensor]:
    """Per-image inputs of pixel-mixed rows: aspect ratios mixed like the images (eq. 1);
    valid sizes of two padded images: the larger of the two in each dimension."""
    mixed = {}
    for name, value in extras.items():
        if value.is_floating_point():
            row = lam.to(value.dtype).view(-1, *([1] * (value.dim() - 1)))
            mixed[name] = torch.cat([value, row * value[i] + (1 - row) * value[j]])
        else:
            mixed[name] = torch.cat([value, torch.maximum(value[i], value[j])])
    return mixed


def lr_schedule(optimizer: torch.optim.Optimizer, settings: TrainSettings, updates: int = 0):
    """The recipe's learning-rate schedule (None: a constant lr): stepped once per epoch, or,
    for "cosine", after every one of the round's `updates` optimizer updates
    (`per_update(schedule)` tells which)."""
    gamma = settings.lr_gamma
    if settings.schedule == "compound":  # lr_e = lr_0 gamma^(e (e + 1) / 2): BIAA's official
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: gamma ** (e * (e + 1) / 2))
    if settings.schedule == "cosine":
        warmup = settings.warmup_epochs * updates / max(settings.epochs, 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(updates - warmup, 1)))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        schedule.per_update = True
        return schedule
    if settings.lr_step:
        return torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step, gamma)
    if settings.lr_milestones:
        milestones = list(settings.lr_milestones)
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma)
    return None


def per_update(schedule) -> bool:
    """Whether a schedule of `lr_schedule` steps after every update (else after every epoch)."""
    return getattr(schedule, "per_update", False)


def training_loss(
    model: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    n_pseudo: int,
    opts: MethodOptions,
    generator: torch.Generator,
    extras: dict[str, torch.Tensor] | None = None,
    dir_terms: DIRTerms | None = None,
    emd_form: EmdForm = "per_sample",
) -> torch.Tensor:
    """The loss of one step. The last `n_pseudo` rows of x are pseudo-labelled (eq. 10).
    `extras` are the model's per-image inputs beyond pixels (its `needs`); `dir_terms` the
    round's LDS / FDS / RankSim state when any is on (bench/train/dir_terms.py); `emd_form`
    the recipe's EMD (bench/train/losses.py), on what the model's head returns (`output`)."""
    extras = extras or {}
    n_labeled = len(x) - n_pseudo
    pairs = _mixup_pairs(label_scores(targets), opts, generator) if opts.tfa else None
    if pairs is not None and opts.tfa_level == "pixel":
        x, targets = tfa.mix_pairs(x, targets, *pairs)  # k = 0 in eq. 1
        extras = _mix_extras(extras, *pairs)
    z = model.forward_features(x, **extras)
    penalty = None
    if dir_terms is not None:  # FDS calibrates z; RankSim's term
        z, penalty = dir_terms.features(z, label_scores(targets), n_labeled, generator)
    if pairs is not None and opts.tfa_level == "feature":
        z, targets = tfa.mix_pairs(z, targets, *pairs)
    outputs = model.forward_head(z)
    output = getattr(model, "output", "logits")
    weights = dir_terms.weights(label_scores(targets)) if dir_terms is not None else None

    # Rows: labelled [0, n_labeled), pseudo-labelled [n_labeled, n_batch), mixed after them.
    # Slices, not boolean masks: no host sync.
    n_batch = n_labeled + n_pseudo
    labeled = torch.cat([outputs[:n_labeled], outputs[n_batch:]])
    labeled_targets = torch.cat([targets[:n_labeled], targets[n_batch:]])
    w_s = None if weights is None else torch.cat([weights[:n_labeled], weights[n_batch:]])
    loss = batch_loss(labeled, labeled_targets, emd_form, w_s, output)  # L_s
    if n_pseudo:
        pseudo = slice(n_labeled, n_batch)
        w_u = None if weights is None else weights[pseudo]
        loss = loss + batch_loss(outputs[pseudo], targets[pseudo], emd_form, w_u, output)  # L_u
    if opts.flsa_weight > 0:
        loss = loss + opts.flsa_weight * flsa.alignment_loss(z, label_scores(targets))
    if penalty is not None:
        loss = loss + penalty
    return loss


def evaluation_batches(split: Split, settings: TrainSettings) -> Iterator[Batch]:
    """Every sample of a split once, in order, unaugmented (twice the training batch)."""
    return batches(
        split,
        settings.eval_batch,
        train=False,
        img_size=settings.img_size,
        device=settings.device,
        generator=torch.Generator(),
        num_workers=settings.num_workers,
        needs=settings.needs,
        max_side=settings.max_side,
        interpolation=settings.interpolation,
    )


@torch.no_grad()
def predict_outputs(model: nn.Module, split: Split, settings: TrainSettings) -> np.ndarray:
    """(N, K) head outputs (the model's `output`: logits, distribution or score) for every
    sample of a split, in order."""
    model.eval()
    out = []
    for x, _, _, extras in evaluation_batches(split, settings):
        with torch.autocast(settings.device.type, torch.bfloat16, enabled=settings.autocast):
            out.append(model(x, **extras).float())
    return torch.cat(out).cpu().numpy()


def predict(model: nn.Module, split: Split, settings: TrainSettings) -> np.ndarray:
    """(N,) predicted scores of a split, in order, on the 10-point scale."""
    return predicted_scores(predict_outputs(model, split, settings), output_of(model))


def output_of(model: nn.Module) -> Output:
    """What the model's head returns (bench/train/losses.py); "logits" unless it says."""
    return getattr(model, "output", "logits")


def training_batches(
    split: Split, batch_size: int, settings: TrainSettings, generator: torch.Generator
) -> Iterator[Batch]:
    """One shuffled, augmented epoch of a split."""
    return batches(
        split,
        batch_size,
        train=True,
        img_size=settings.img_size,
        device=settings.device,
        generator=generator,
        resize=settings.resize,
        num_workers=settings.num_workers,
        needs=settings.needs,
        max_side=settings.max_side,
        interpolation=settings.interpolation,
        drop_last=settings.drop_last,
    )


def endless_batches(
    split: Split, batch_size: int, settings: TrainSettings, generator: torch.Generator
) -> Iterator[Batch]:
    while True:
        yield from training_batches(split, batch_size, settings, generator)


def pseudo_batch_size(train: Split, pseudo: Split, batch_size: int) -> int:
    """Pseudo-labelled rows per step: in proportion to the two splits' sizes (eq. 10)."""
    return max(1, round(batch_size * len(pseudo) / len(train)))


def join(labelled: Batch, pseudo: Batch) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """A step's rows: the labelled batch, then the pseudo-labelled one (eq. 10). Batches of
    images at their own sizes (MUSIQ's) are zero-padded at the bottom and right to the larger
    of the two, as each was padded to its own largest image (bench.data.loading)."""
    extras = {k: torch.cat([v, pseudo.extras[k]]) for k, v in labelled.extras.items()}
    both = (labelled, pseudo)
    height = max(labelled.x.shape[-2], pseudo.x.shape[-2])
    width = max(labelled.x.shape[-1], pseudo.x.shape[-1])
    x = [F.pad(b.x, (0, width - b.x.shape[-1], 0, height - b.x.shape[-2])) for b in both]
    return torch.cat(x), torch.cat([labelled.targets, pseudo.targets]), extras


def optimizer_step(
    trainer, x: torch.Tensor, targets: torch.Tensor, n_pseudo: int, extras: dict,
    update: bool = True,
) -> torch.Tensor:  # fmt: skip
    """One step of a procedure (`trainer`: its model, opts, settings, optimizer, step_generator,
    dir_terms and its count of `updates`): the loss of eq. 10 under autocast and its backward;
    with `update`, the optimizer's step (gradient accumulation: the loss is divided by the
    batches per update). Returns the loss, detached."""
    settings = trainer.settings
    with torch.autocast(settings.device.type, torch.bfloat16, enabled=settings.autocast):
        loss = training_loss(
            trainer.model, x, targets, n_pseudo, trainer.opts, trainer.step_generator, extras,
            trainer.dir_terms, settings.emd,
        )  # fmt: skip
    (loss / settings.accumulate if settings.accumulate > 1 else loss).backward()
    if update:
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.updates += 1
    return loss.detach()


class Procedure(Protocol):
    """How a round trains, one epoch at a time (train_round validates after each epoch).
    Constructed as `Procedure(model, train, pseudo, opts, settings, seed, **config)`; counts its
    optimizer updates in `updates` (optimizer_step does) and stops an epoch at the settings'
    `max_steps`."""

    updates: int

    def epoch(self, epoch: int) -> torch.Tensor:
        """Train one epoch; return the mean training loss as a 0-d tensor (no host sync)."""
        ...


class Supervised:
    """Shuffled mini-batches, one optimizer step each; with a pseudo-labelled split every step
    also draws a proportional pseudo-labelled batch (eq. 10)."""

    def __init__(
        self,
        model: nn.Module,
        train: Split,
        pseudo: Split | None,
        opts: MethodOptions,
        settings: TrainSettings,
        seed: int,
    ):
        self.model, self.train, self.opts, self.settings = model, train, opts, settings
        self.generator = torch.Generator().manual_seed(seed)  # batch order and flips, on the host
        self.step_generator = torch.Generator(device=settings.device).manual_seed(seed)  # TFA
        self.optimizer = make_optimizer(model, settings)
        self.updates = 0
        n, size = len(train), settings.batch_size  # batches an epoch (bench.data.loading)
        self.batches = max(1, n // size) if settings.drop_last else -(-n // size)
        updates = settings.epochs * -(-self.batches // settings.accumulate)
        self.schedule = lr_schedule(self.optimizer, settings, updates)
        self.dir_terms = dir_terms(opts, train, model, settings.device)
        self.pseudo = None
        if pseudo is not None and len(pseudo):
            size = pseudo_batch_size(train, pseudo, settings.batch_size)
            self.pseudo = endless_batches(pseudo, size, settings, self.generator)

    def epoch(self, epoch: int) -> torch.Tensor:
        settings = self.settings
        if self.dir_terms is not None:
            self.dir_terms.start_epoch(epoch)
        total = torch.zeros((), device=settings.device)
        steps = 0
        for batch in training_batches(self.train, settings.batch_size, settings, self.generator):
            if settings.capped(self.updates):
                break
            x, targets, extras = batch.x, batch.targets, batch.extras
            n_u = 0
            if self.pseudo is not None:
                pseudo = next(self.pseudo)
                (x, targets, extras), n_u = join(batch, pseudo), len(pseudo.x)
            update = (steps + 1) % settings.accumulate == 0 or steps + 1 == self.batches
            total += optimizer_step(self, x, targets, n_u, extras, update)
            steps += 1
            if update and per_update(self.schedule):
                self.schedule.step()
        if self.schedule is not None and not per_update(self.schedule):
            self.schedule.step()
        if self.dir_terms is not None:
            self.dir_terms.end_epoch()
        return total / max(steps, 1)


@dataclass(frozen=True)
class Round:
    """One training round: its data, method options, settings and seed, the pseudo-labelled
    split of a self-training round (eq. 10), and the model's procedure with its settings."""

    train: Split
    val: Split
    opts: MethodOptions
    settings: TrainSettings
    seed: int
    pseudo: Split | None = None
    procedure: Callable[..., Procedure] = Supervised
    procedure_config: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """Where a round reports: `log(line)` writes the stage's log; `on_epoch(epoch, epochs,
    train_loss, val_metric)` moves its progress bar (epoch 0: started)."""

    log: Callable[[str], None]
    on_epoch: Callable[[int, int, float, float], None] | None = None

    def epoch(self, epoch: int, epochs: int, loss: float, metric: float) -> None:
        if self.on_epoch is not None:
            self.on_epoch(epoch, epochs, loss, metric)


def train_round(model: nn.Module, training: Round, progress: Progress) -> RoundResult:
    """Train for `training.settings.epochs` epochs with the round's procedure; keep the best epoch
    by validation SRCC, reported after each epoch."""
    settings, val = training.settings, training.val
    model.to(settings.device)
    trainer = training.procedure(
        model, training.train, training.pseudo, training.opts, settings, training.seed,
        **training.procedure_config,
    )  # fmt: skip

    best_srcc, best_state, best_epoch, rows = -np.inf, None, -1, []
    progress.epoch(0, settings.epochs, float("nan"), float("nan"))  # started
    for epoch in range(settings.epochs):
        model.train()
        train_loss = trainer.epoch(epoch).item()  # the one host sync of the epoch
        if not np.isfinite(train_loss):
            raise Diverged(f"training loss became {train_loss} in epoch {epoch + 1}")
        val_metrics = evaluate(predict(model, val, settings), val.scores)
        rows.append({"epoch": epoch + 1, "train_loss": train_loss, **val_metrics})
        progress.log(
            f"epoch {epoch + 1}/{settings.epochs} loss {train_loss:.4f} "
            f"val srcc {val_metrics['srcc']:.4f} plcc {val_metrics['plcc']:.4f}"
        )
        progress.epoch(epoch + 1, settings.epochs, train_loss, val_metrics["srcc"])
        srcc = val_metrics["srcc"]
        if np.isfinite(srcc) and srcc > best_srcc:
            best_srcc, best_epoch, best_state = srcc, epoch + 1, cpu_state(model)
        if settings.capped(trainer.updates):
            break
    if best_state is None:  # validation SRCC undefined all along (constant predictions)
        best_epoch, best_state = len(rows), cpu_state(model)
    return RoundResult(best_state, best_epoch, pd.DataFrame(rows))
