"""A real dataset's checked listing, cached, so that every stage does not re-read AVA.

Loading a real dataset reads its annotation files and opens the header of every listed image
(bench/data/real.py): for AVA's 255,000 images that is minutes, and every stage process used to
do it again. `cached` keeps the result (the splits: image paths relative to the dataset's folder,
scores, rating distributions, ids, group ids, aspect ratios) in one .npz under the results
store's cache folder, under a key that changes whenever the data could have:

- every annotation file (.txt, .csv, .jpgl) of the dataset's folder, by content;
- every other file (the images), by relative path, size and modification time.

Listing the folder's files costs a directory walk, not an image read, so a warm load takes
seconds at AVA's size (README, "Real datasets at AVA's scale"). The warnings a check prints
(skipped images, votes missing) are printed when the listing is checked, not again when it is
read from the cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.data.types import IAADataset, Split

ANNOTATIONS = {".txt", ".csv", ".jpgl"}
IMAGES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
LISTING_VERSION = 2  # bump when what a listing holds changes (2: carved val >= 3 images)


def state_key(folder: Path) -> str:
    """A hash of a folder's annotation files' content and its other files' names, sizes and
    modification times. Symbolic links to folders (an image folder on another disk) are
    followed."""
    parts = [f"listing{LISTING_VERSION}".encode()]

    def walk(directory: str, relative: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda entry: entry.name)
        for entry in entries:
            name = relative + entry.name
            if entry.is_dir():
                walk(entry.path, name + "/")
            elif os.path.splitext(entry.name)[1].lower() in ANNOTATIONS:
                parts.append(name.encode() + b"\0" + Path(entry.path).read_bytes() + b"\0")
            else:
                stat = entry.stat()
                parts.append(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())

    walk(str(folder), "")
    return hashlib.sha256(b"".join(parts)).hexdigest()[:20]


def _to_arrays(data: IAADataset, folder: Path) -> dict[str, np.ndarray]:
    arrays = {"name": np.array(data.name), "label_kind": np.array(data.label_kind)}
    for name in ("train", "val", "test", "unlabeled"):
        split = getattr(data, name)
        if split is None:
            continue
        relative = [str(Path(p).relative_to(folder)) for p in split.images]
        arrays[f"{name}_images"] = np.array(relative)
        arrays[f"{name}_scores"] = split.scores
        arrays[f"{name}_ids"] = np.array(split.ids)
        arrays[f"{name}_aspect"] = split.aspect_ratios()
        for field in ("dists", "group"):
            if getattr(split, field) is not None:
                arrays[f"{name}_{field}"] = getattr(split, field)
    return arrays


def _from_arrays(arrays: dict[str, np.ndarray], folder: Path) -> IAADataset:
    splits = {}
    prefix = f"{folder}{os.sep}"  # paths as strings: 255,000 Path objects take seconds
    for name in ("train", "val", "test", "unlabeled"):
        if f"{name}_images" not in arrays:
            splits[name] = None
            continue
        splits[name] = Split(
            images=[prefix + p for p in arrays[f"{name}_images"].tolist()],
            scores=arrays[f"{name}_scores"],
            dists=arrays.get(f"{name}_dists"),
            ids=arrays[f"{name}_ids"].tolist(),
            aspect=arrays[f"{name}_aspect"],
            group=arrays.get(f"{name}_group"),
        )
    return IAADataset(str(arrays["name"]), str(arrays["label_kind"]), **splits)


def cached(name: str, folder: Path, cache_dir: Path, load: Callable[[], IAADataset]) -> IAADataset:
    """`load()` (a real loader's checked listing of `folder`), or its cached copy when the
    folder has not changed since it was made."""
    folder = Path(folder).resolve()
    path = Path(cache_dir) / "real" / f"{name}-{state_key(folder)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return _from_arrays({k: npz[k] for k in npz.files}, folder)
        except (OSError, ValueError, KeyError, EOFError):
            pass  # an unreadable cache: checked again below
    data = load()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **_to_arrays(data, folder))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data


def image_folder(folder: Path, n_max: int, seed: int) -> Split:
    """An unlabeled pool from every image under `folder` (`--unlabeled`): a seeded random
    `n_max` of them at most, labels withheld (NaN scores), each with its aspect ratio."""
    from bench.data.real import readable_aspects

    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGES)
    pick = np.sort(np.random.default_rng(seed).permutation(len(paths))[:n_max])
    chosen = [paths[i] for i in pick]
    aspects = readable_aspects(chosen)
    usable = [k for k, aspect in enumerate(aspects) if aspect is not None]
    return Split(
        images=[chosen[k] for k in usable],
        scores=np.full(len(usable), np.nan, dtype=np.float32),
        dists=None,
        ids=[str(chosen[k].relative_to(folder)) for k in usable],
        aspect=np.array([aspects[k] for k in usable], dtype=np.float32),
    )
