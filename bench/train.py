"""One training round, read top to bottom: batches -> features -> [TFA] -> head -> loss [+ FLSA].

The same round serves the first training and the APDS self-training round (eq. 10): with a
pseudo-labelled split, every step also draws a pseudo-labelled batch, and the loss is
L_s (mean over labelled and mixed rows) + L_u (mean over pseudo-labelled rows).
The checkpoint kept is the epoch with the best validation SRCC; the test set is never looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench import mixup_sampling
from bench.data.loading import batches
from bench.data.types import Split
from bench.losses import batch_loss
from bench.methods import MethodOptions
from bench.metrics import evaluate
from elta import flsa, tfa
from elta.apds import expected_score


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    img_size: int
    resize: int | None
    num_workers: int
    device: torch.device

    @property
    def amp(self) -> bool:
        return self.device.type == "cuda"  # bf16 autocast on GPUs


@dataclass
class RoundResult:
    state: dict[str, torch.Tensor]  # weights of the best epoch, on the CPU
    best_epoch: int
    curve: pd.DataFrame


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


def training_loss(
    model: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    n_pseudo: int,
    opts: MethodOptions,
    generator: torch.Generator,
) -> torch.Tensor:
    """The loss of one step. The last `n_pseudo` rows of x are pseudo-labelled (eq. 10)."""
    n_labeled = len(x) - n_pseudo
    pairs = _mixup_pairs(label_scores(targets), opts, generator) if opts.tfa else None
    if pairs is not None and opts.tfa_level == "pixel":
        x, targets = tfa.mix_pairs(x, targets, *pairs)  # k = 0 in eq. 1
    z = model.forward_features(x)
    if pairs is not None and opts.tfa_level == "feature":
        z, targets = tfa.mix_pairs(z, targets, *pairs)
    logits = model.forward_head(z)

    # Rows: labelled [0, n_labeled), pseudo-labelled [n_labeled, n_batch), mixed after them.
    # Slices, not boolean masks: no host sync.
    n_batch = n_labeled + n_pseudo
    labeled = torch.cat([logits[:n_labeled], logits[n_batch:]])
    labeled_targets = torch.cat([targets[:n_labeled], targets[n_batch:]])
    loss = batch_loss(labeled, labeled_targets, opts.emd_form)  # L_s
    if n_pseudo:
        pseudo = slice(n_labeled, n_batch)
        loss = loss + batch_loss(logits[pseudo], targets[pseudo], opts.emd_form)  # L_u
    if opts.flsa_weight > 0:
        loss = loss + opts.flsa_weight * flsa.alignment_loss(z, label_scores(targets))
    return loss


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, settings: TrainSettings) -> np.ndarray:
    """(N, 10) logits for every sample of a split, in order."""
    model.eval()
    out = []
    for x, _, _ in batches(
        split,
        settings.batch_size * 2,
        train=False,
        img_size=settings.img_size,
        device=settings.device,
        generator=torch.Generator(),
        num_workers=settings.num_workers,
    ):
        with torch.autocast(settings.device.type, torch.bfloat16, enabled=settings.amp):
            out.append(model(x).float())
    return torch.cat(out).cpu().numpy()


def predicted_scores(logits: np.ndarray) -> np.ndarray:
    return expected_score(torch.softmax(torch.from_numpy(logits), -1)).numpy()


def _training_batches(
    split: Split, batch_size: int, settings: TrainSettings, generator: torch.Generator
):
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
    )


def _endless(split: Split, batch_size: int, settings: TrainSettings, generator: torch.Generator):
    while True:
        yield from _training_batches(split, batch_size, settings, generator)


def train_round(
    model: nn.Module,
    train: Split,
    val: Split,
    opts: MethodOptions,
    settings: TrainSettings,
    seed: int,
    log: Callable[[str], None],
    pseudo: Split | None = None,
    on_epoch: Callable[[int, int, float, float], None] | None = None,
) -> RoundResult:
    """Train for `settings.epochs` epochs with Adam; keep the best epoch by validation SRCC.
    `on_epoch(epoch, epochs, train_loss, val_srcc)` reports progress after each epoch."""
    model.to(settings.device)
    generator = torch.Generator().manual_seed(seed)  # batch order and flips, on the host
    step_generator = torch.Generator(device=settings.device).manual_seed(seed)  # TFA sampling
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    pseudo_batches: Iterator | None = None
    if pseudo is not None and len(pseudo):
        pseudo_batch_size = max(1, round(settings.batch_size * len(pseudo) / len(train)))
        pseudo_batches = _endless(pseudo, pseudo_batch_size, settings, generator)

    best_srcc, best_state, best_epoch, rows = -np.inf, None, -1, []
    if on_epoch is not None:
        on_epoch(0, settings.epochs, float("nan"), float("nan"))  # started
    for epoch in range(settings.epochs):
        model.train()
        total = torch.zeros((), device=settings.device)
        steps = 0
        for x, targets, _ in _training_batches(train, settings.batch_size, settings, generator):
            n_u = 0
            if pseudo_batches is not None:
                x_u, t_u, _ = next(pseudo_batches)
                x, targets, n_u = torch.cat([x, x_u]), torch.cat([targets, t_u]), len(x_u)
            with torch.autocast(settings.device.type, torch.bfloat16, enabled=settings.amp):
                loss = training_loss(model, x, targets, n_u, opts, step_generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1

        train_loss = total.item() / max(steps, 1)  # the one host sync of the epoch
        if not np.isfinite(train_loss):
            raise Diverged(f"training loss became {train_loss} in epoch {epoch + 1}")
        val_metrics = evaluate(predicted_scores(predict_logits(model, val, settings)), val.scores)
        rows.append({"epoch": epoch + 1, "train_loss": train_loss, **val_metrics})
        log(
            f"epoch {epoch + 1}/{settings.epochs} loss {train_loss:.4f} "
            f"val srcc {val_metrics['srcc']:.4f} plcc {val_metrics['plcc']:.4f}"
        )
        if on_epoch is not None:
            on_epoch(epoch + 1, settings.epochs, train_loss, val_metrics["srcc"])
        srcc = val_metrics["srcc"]
        if np.isfinite(srcc) and srcc > best_srcc:
            best_srcc, best_epoch = srcc, epoch + 1
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    if best_state is None:  # validation SRCC undefined all along (constant predictions)
        best_epoch = settings.epochs
        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return RoundResult(best_state, best_epoch, pd.DataFrame(rows))
