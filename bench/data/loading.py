"""Batches of (normalised images, targets, row indices, extras) on the training device.

Two sources behind one function: in-memory uint8 arrays (the embedded benchmark: indexed and
augmented as tensors, no worker processes) and image files (real datasets: a torch DataLoader
with workers, the official transforms: resize, random crop, horizontal flip for training;
resize for evaluation). The loader's worker processes are forked from the process that runs
the stage, whichever it is (`LOADER_START_METHOD`).

`extras` holds what a model declares it needs beyond pixels (its `needs`), per row:
- "aspect": (B,) float32 width / height of each image before any resize (HGCN);
- "size": (B, 2) int64 valid (height, width) of each image in the batch (MUSIQ). A model that
  needs it gets image files at their own aspect ratio, the longer side capped at `max_side`,
  zero-padded (after normalisation) at the bottom and right to the largest image of the batch;
  in-memory images are square, so every row's size is the batch's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.data.types import Split
from iaa_common import IMAGENET_MEAN, IMAGENET_STD, UserError

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

EXTRAS = ("aspect", "size")

# How DataLoader workers start, the same in the main process, a loky worker and a Ray task.
# Not the process's default: in a loky worker that is loky's own method, whose launcher expects
# loky's Process class and fails on the plain one the DataLoader builds ("'Process' object has
# no attribute 'env'"). Not spawn or forkserver either: their children are told to take the
# parent's default method, and a fresh interpreter does not know loky's ("cannot find context
# for 'loky'"). A forked worker needs neither; it is Linux's default in the main process.
LOADER_START_METHOD = "fork"


def data_loader(
    dataset: Dataset, batch_size: int | None, num_workers: int, device: torch.device, **kwargs
) -> DataLoader:
    """A DataLoader whose workers, if any, start by `LOADER_START_METHOD`, wherever the stage
    runs; pinned memory on a GPU, no persistent workers."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        multiprocessing_context=LOADER_START_METHOD if num_workers else None,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        **kwargs,
    )


class Batch(NamedTuple):
    x: torch.Tensor  # (B, 3, H, W) normalised images
    targets: torch.Tensor  # (B, 10) distributions or (B,) scores
    index: torch.Tensor  # (B,) rows of the split
    extras: dict[str, torch.Tensor]  # what the model needs beyond pixels (see above)


def targets_of(split: Split) -> torch.Tensor:
    """(N, 10) distributions when the split has them, else (N,) scalar scores."""
    return torch.from_numpy(split.dists if split.dists is not None else split.scores).float()


class _ImageFiles(Dataset):
    def __init__(self, paths: list[Path] | list[str], transform: transforms.Compose):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            with Image.open(self.paths[index]) as image:
                return self.transform(image.convert("RGB")), index
        except OSError as err:
            raise UserError(f"{self.paths[index]}: unreadable image ({err})") from err


class _CapLongerSide:
    """Resize so that the longer side is at most `max_side`, keeping the aspect ratio."""

    def __init__(self, max_side: int | None):
        self.max_side = max_side

    def __call__(self, image: Image.Image) -> Image.Image:
        longer = max(image.size)
        if self.max_side is None or longer <= self.max_side:
            return image
        scale = self.max_side / longer
        width, height = (max(1, round(side * scale)) for side in image.size)
        return image.resize((width, height), Image.Resampling.BICUBIC)


def _native_transform(max_side: int | None, train: bool) -> transforms.Compose:
    steps = [_CapLongerSide(max_side), *([transforms.RandomHorizontalFlip()] if train else [])]
    normalize = transforms.Normalize(MEAN.flatten().tolist(), STD.flatten().tolist())
    return transforms.Compose([*steps, transforms.ToTensor(), normalize])


def _pad_collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, ...]:
    """Images of different sizes -> a zero-padded batch, each image's (height, width), indices."""
    sizes = torch.tensor([image.shape[1:] for image, _ in items], dtype=torch.long)
    x = torch.zeros(len(items), 3, *sizes.amax(0).tolist())
    for row, (image, _) in enumerate(items):  # data loading, in the workers: not a training step
        x[row, :, : image.shape[1], : image.shape[2]] = image
    return x, sizes, torch.tensor([index for _, index in items])


def _full_size(x: torch.Tensor) -> torch.Tensor:
    """(B, 2) sizes of a batch of equally sized images: every row is (H, W)."""
    return torch.tensor(x.shape[-2:]).expand(len(x), 2)


def _file_transform(
    img_size: int, resize: int, train: bool, interpolation: str
) -> transforms.Compose:
    """Training: resize x resize, flip, random crop to img_size; evaluation: img_size x img_size
    (both squashing the aspect ratio, as the official loaders), with PIL's `interpolation`."""
    mode = transforms.InterpolationMode(interpolation)
    steps = (
        [
            transforms.Resize((resize, resize), interpolation=mode),
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(img_size),
        ]
        if train
        else [transforms.Resize((img_size, img_size), interpolation=mode)]
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
        # Contiguous NCHW, not the view's channels-last strides: oneDNN in torch 2.14.1 corrupts
        # the heap in the backward of 1x1 stride-2 convolutions with fewer than 7 input
        # channels on channels-last tensors (Conv2d(4, 8, 1, 2) on a (16, 4, 8, 8) channels-last
        # input aborts within a few steps; with torch.backends.mkldnn.enabled = False it does not).
        x = pixels[index].contiguous().to(device, non_blocking=True).float().div_(255)
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
    needs: tuple[str, ...] = (),
    max_side: int | None = None,
    interpolation: str = "bilinear",
    drop_last: bool = True,
) -> Iterator[Batch]:
    """One epoch of batches. Training batches are shuffled and drop the last partial batch
    (unless `drop_last` is false); evaluation batches keep every sample, in order. `needs`
    names the extras to supply (see the module docstring); `interpolation` is the filter that
    resizes image files; `num_workers` processes decode them (0: this process does)."""
    unknown = set(needs) - set(EXTRAS)
    if unknown:
        raise ValueError(f"unknown model needs {sorted(unknown)}; known: {', '.join(EXTRAS)}")
    targets = targets_of(split)
    aspect = torch.from_numpy(split.aspect_ratios()) if "aspect" in needs else None
    n = len(split)
    if train:
        order = torch.randperm(n, generator=generator)
        order = order[: n - n % batch_size] if drop_last and n >= batch_size else order
    else:
        order = torch.arange(n)
    if isinstance(split.images, np.ndarray):
        arrays = _array_batches(split.images, order, batch_size, img_size, train, generator, device)
        source = ((x, _full_size(x), index) for x, index in arrays)
    else:
        native = "size" in needs
        transform = (
            _native_transform(max_side, train)
            if native
            else _file_transform(img_size, resize or img_size, train, interpolation)
        )
        loader = data_loader(
            torch.utils.data.Subset(_ImageFiles(split.images, transform), order.tolist()),
            batch_size,
            num_workers,
            device,
            collate_fn=_pad_collate if native else None,
        )
        source = (b if native else (b[0], _full_size(b[0]), b[1]) for b in loader)
    for x, sizes, index in source:
        extras = {}
        if aspect is not None:
            extras["aspect"] = aspect[index].to(device, non_blocking=True)
        if "size" in needs:
            extras["size"] = sizes.to(device, non_blocking=True)
        x = x.to(device, non_blocking=True)
        yield Batch(x, targets[index].to(device, non_blocking=True), index, extras)
