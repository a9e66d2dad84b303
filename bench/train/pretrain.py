"""Pre-training a model part on a label the dataset really has (the `pretrain` stage).

TANet's theme branch is a Places365 scene classifier, frozen inside TANet (He et al. 2022).
With no Places365 file (the embedded benchmark, the cpu and smoke profiles) the harness
pre-trains the same network, smaller, on the embedded benchmark's scene categories
(`Split.group`, bench/data/synth.py), then TANet loads and freezes it like the file:

- the network is the model module's `<part>_network(**config)`, an image -> logits classifier
  with a `num_classes` attribute, whose state_dict the model loads as weights part `<part>`;
- cross-entropy on the training split's group ids, Adam at the profile's learning rate and
  batch size, the same augmentation as training, `epochs` epochs (the model config's
  `pretrain` table);
- the epoch with the best validation accuracy is kept (never the test split).

The aesthetic labels are not used, so pre-training sees nothing the main round would not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bench.data.types import Split
from bench.train.loop import Progress, cpu_state, evaluation_batches, training_batches
from bench.train.settings import TrainSettings


def _group_labels(split: Split, n_classes: int, name: str) -> torch.Tensor:
    if split.group is None:
        raise ValueError(f"the {name} split has no group labels to pre-train on")
    labels = torch.from_numpy(split.group)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"the {name} split's group ids span [{int(labels.min())}, {int(labels.max())}], "
            f"outside the network's {n_classes} classes"
        )
    return labels


@torch.no_grad()
def accuracy(network: nn.Module, split: Split, labels: torch.Tensor, settings: TrainSettings):
    """Top-1 accuracy of a classifier on a split."""
    network.eval()
    correct = torch.zeros((), device=settings.device)
    for x, _, index, _ in evaluation_batches(split, settings):
        predicted = network(x).argmax(-1)
        correct += (predicted == labels[index].to(settings.device)).sum()
    return correct.item() / len(split)


def pretrain_part(
    network: nn.Module,
    train: Split,
    val: Split,
    settings: TrainSettings,
    seed: int,
    progress: Progress,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Train `network` to predict the group id; return its best-on-validation state_dict (on
    the CPU) and the curve; the validation accuracy is the metric `progress` reports."""
    network.to(settings.device)
    train_labels = _group_labels(train, network.num_classes, "train")
    val_labels = _group_labels(val, network.num_classes, "validation")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.lr)
    best_accuracy, best_state, rows, updates = -np.inf, None, [], 0
    progress.epoch(0, settings.epochs, float("nan"), float("nan"))
    for epoch in range(settings.epochs):
        network.train()
        total = torch.zeros((), device=settings.device)
        steps = 0
        for x, _, index, _ in training_batches(train, settings.batch_size, settings, generator):
            if settings.capped(updates):
                break
            updates += 1
            loss = F.cross_entropy(network(x), train_labels[index].to(settings.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
        train_loss = (total / max(steps, 1)).item()  # the one host sync of the epoch
        val_accuracy = accuracy(network, val, val_labels, settings)
        rows.append({"epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": val_accuracy})
        progress.log(
            f"epoch {epoch + 1}/{settings.epochs} loss {train_loss:.4f} val acc {val_accuracy:.4f}"
        )
        progress.epoch(epoch + 1, settings.epochs, train_loss, val_accuracy)
        if val_accuracy > best_accuracy:
            best_accuracy = val_accuracy
            best_state = cpu_state(network)
        if settings.capped(updates):
            break
    return best_state, pd.DataFrame(rows)
