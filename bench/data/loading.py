"""Batches of (normalised images, targets, label scores) on the training device.

Two sources behind one function: in-memory uint8 arrays (the embedded benchmark: indexed and
augmented as tensors, no worker processes) and image files (real datasets: a torch DataLoader
with workers, the official transforms: resize, random crop, horizontal flip for training;
resize for evaluation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.data.types import Split
from bench.errors import UserError

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, targets, row indices


def targets_of(split: Split) -> torch.Tensor:
    """(N, 10) distributions when the split has them, else (N,) scalar scores."""
    return torch.from_numpy(split.dists if split.dists is not None else split.scores).float()


class _ImageFiles(Dataset):
    def __init__(self, paths: list[Path], transform: transforms.Compose):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            with Image.open(self.paths[index]) as image:
                return self.transform(image.convert("RGB")), index
        except OSError as err:
            raise UserError(f"{self.paths[index]}: unreadable image ({err})") from err


def _file_transform(img_size: int, resize: int, train: bool) -> transforms.Compose:
    steps = (
        [
            transforms.Resize((resize, resize)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(img_size),
        ]
        if train
        else [transforms.Resize((img_size, img_size))]
    )
    normalize = transforms.Normalize(MEAN.flatten().tolist(), STD.flatten().tolist())
    return transforms.Compose([*steps, transforms.ToTensor(), normalize])


def _array_batches(
    images: np.ndarray,
    order: torch.Tensor,
    batch_size: int,
    img_size: int,
    train: bool,
    generator: torch.Generator,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8, a view
    mean, std = MEAN.to(device), STD.to(device)
    for index in order.split(batch_size):
        x = pixels[index].to(device, non_blocking=True).float().div_(255)
        if x.shape[-1] != img_size:
            x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", antialias=True)
        if train:
            flip = torch.rand(len(index), generator=generator) < 0.5
            x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(-1), x)
        yield (x - mean) / std, index


def batches(
    split: Split,
    batch_size: int,
    *,
    train: bool,
    img_size: int,
    device: torch.device,
    generator: torch.Generator,
    resize: int | None = None,
    num_workers: int = 0,
) -> Iterator[Batch]:
    """One epoch of batches. Training batches are shuffled and drop the last partial batch;
    evaluation batches keep every sample, in order (the official code drops the last one)."""
    targets = targets_of(split)
    n = len(split)
    if train:
        order = torch.randperm(n, generator=generator)
        order = order[: n - n % batch_size] if n >= batch_size else order
    else:
        order = torch.arange(n)
    if isinstance(split.images, np.ndarray):
        source = _array_batches(split.images, order, batch_size, img_size, train, generator, device)
    else:
        files = _ImageFiles(split.images, _file_transform(img_size, resize or img_size, train))
        loader = DataLoader(
            torch.utils.data.Subset(files, order.tolist()),
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        source = ((x.to(device, non_blocking=True), i) for x, i in loader)
    for x, index in source:
        yield x, targets[index].to(device, non_blocking=True), index
