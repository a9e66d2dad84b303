"""The in-memory form every dataset loader returns, real or embedded.

Scores are always on the paper's 10-point scale (Figure 1). Distribution datasets (AVA and
synth-ava) also carry 10-bin rating distributions for ratings 1..10; scalar datasets carry
`dists=None` and are trained with MSE (paper, Appendix A.2).

Beyond pixels and labels, a split carries what some models need per image (a model's
`needs`, docs/DESIGN.md "Adding things"): `aspect`, the width / height of the image as it was
before any resize (HGCN's layout-aware adjacency), and `group`, an integer group id (BIAA's
meta-learning tasks, TANet's theme pre-training on the embedded benchmark): AVA's challenge,
TAD66K's theme, PARA's session, the embedded benchmark's scene category.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

LabelKind = Literal["dist", "scalar"]


@dataclass
class Split:
    """One split. `images` is either a uint8 array (N, H, W, 3) held in memory (the embedded
    benchmark) or a list of N image file paths, `Path` or `str` (real datasets; a cached listing
    gives strings, bench/data/listing.py). Unlabeled splits have NaN scores
    and no distributions."""

    images: np.ndarray | list[Path] | list[str]
    scores: np.ndarray
    dists: np.ndarray | None
    ids: list[str]
    aspect: np.ndarray | None = None  # (N,) float32 width / height; None: square images
    group: np.ndarray | None = None  # (N,) int64 group ids; None: the dataset has no groups

    def __len__(self) -> int:
        return len(self.ids)

    def aspect_ratios(self) -> np.ndarray:
        """(N,) float32 width / height of each image (1.0 for square in-memory images)."""
        if self.aspect is not None:
            return self.aspect
        return np.ones(len(self), dtype=np.float32)

    def subset(self, index: np.ndarray) -> Split:
        images = (
            self.images[index]
            if isinstance(self.images, np.ndarray)
            else [self.images[i] for i in index]
        )
        return Split(
            images=images,
            scores=self.scores[index],
            dists=None if self.dists is None else self.dists[index],
            ids=[self.ids[i] for i in index],
            aspect=None if self.aspect is None else self.aspect[index],
            group=None if self.group is None else self.group[index],
        )


@dataclass
class IAADataset:
    """A dataset ready for training: train/val/test splits and, when available, an unlabeled
    pool for APDS self-training (labels withheld: scores NaN)."""

    name: str
    label_kind: LabelKind
    train: Split
    val: Split
    test: Split
    unlabeled: Split | None = None
    fingerprint: str | None = None  # of the content (`fingerprint`), set by the loaders


def fingerprint(data: IAADataset) -> str:
    """A short content hash of a dataset: every split's images (the bytes of in-memory images,
    the paths of image files), scores, rating distributions, ids and group ids. Stages record
    it, and table captions name it, so that two results stores can be checked to rest on the
    same data."""
    digest = hashlib.sha256(data.name.encode())
    for split in (data.train, data.val, data.test, data.unlabeled):
        if split is None:
            continue
        images = split.images
        if isinstance(images, np.ndarray):
            digest.update(np.ascontiguousarray(images).tobytes())
        else:
            digest.update("\n".join(map(str, images)).encode())
        for array in (split.scores, split.dists, split.group):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\n".join(split.ids).encode())
    return digest.hexdigest()[:12]
