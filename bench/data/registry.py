"""Dataset registry: the embedded presets and the four real datasets, by name.

A real dataset's unlabeled pool for APDS is drawn from the other real datasets found under the
same data root (paper, Appendix A.2: "randomly sampled and constructed from other datasets with
no more instances than the original training dataset"), labels withheld.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from bench.data import listing, real, synth
from bench.data.types import IAADataset, Split, fingerprint
from iaa_common import UserError

DATA_SEED = 0  # the benchmark's splits are fixed; run seeds vary the training only
REAL = {"ava": "AVA", "aadb": "AADB", "tad66k": "TAD66K", "para": "PARA"}


class Scale(Protocol):
    """How large the embedded benchmark is rendered: what a profile (bench.profiles) says."""

    synth_img_size: int
    synth_sizes: synth.Sizes


def dataset_names() -> list[str]:
    return [*synth.PRESETS, *REAL]


def paper_dataset(name: str) -> str:
    """The paper's dataset a name stands for (synth-ava -> AVA)."""
    check_name(name)
    return synth.PRESETS[name].paper_dataset if name in synth.PRESETS else REAL[name]


def check_name(name: str) -> None:
    if name not in dataset_names():
        raise UserError(f"unknown dataset '{name}'; valid datasets: {', '.join(dataset_names())}")


def data_identity(name: str, profile: Scale) -> str | None:
    """What an embedded dataset depends on, for a stage id: its generator version, knobs,
    sizes and seed (its cache file name). None for a real dataset (its data root says it)."""
    check_name(name)
    if name not in synth.PRESETS:
        return None
    return synth.cache_path(
        name, profile.synth_img_size, profile.synth_sizes, DATA_SEED, Path(".")
    ).name


def _pool_from_others(name: str, data_root: Path, cache_dir: Path, n_max: int) -> Split | None:
    others = []
    for other in REAL:
        if other == name:
            continue
        try:
            real.dataset_dir(data_root, REAL[other])
        except UserError:  # that dataset is not under the root
            continue
        others.append(_real(other, data_root, cache_dir).train)
    if not others:
        return None
    paths = [p for split in others for p in split.images]
    ids = [i for split in others for i in split.ids]
    aspects = np.concatenate([split.aspect_ratios() for split in others])
    pick = np.random.default_rng(DATA_SEED).permutation(len(paths))[:n_max]
    return Split(
        images=[paths[i] for i in pick],
        scores=np.full(len(pick), np.nan, dtype=np.float32),
        dists=None,
        ids=[ids[i] for i in pick],
        aspect=aspects[pick],  # no group: the other datasets' group ids mean other things
    )


def _real(name: str, data_root: Path, cache_dir: Path) -> IAADataset:
    """A real dataset's checked listing, cached (bench/data/listing.py)."""
    folder = real.dataset_dir(data_root, REAL[name])
    return listing.cached(
        name, folder, cache_dir, lambda: real.LOADERS[name](folder, seed=DATA_SEED)
    )


def load_dataset(
    name: str,
    profile: Scale,
    data_root: Path | None,
    cache_dir: Path,
    unlabeled: Path | None = None,
) -> IAADataset:
    """Load a dataset by name: synth presets from the on-disk cache (generated on first use),
    real datasets from `data_root` in their official formats. A real dataset's unlabeled pool
    is `unlabeled`'s images when given, else drawn from the other datasets under the root."""
    check_name(name)
    if name in synth.PRESETS:
        return synth.load_synth(
            name, profile.synth_img_size, profile.synth_sizes, DATA_SEED, cache_dir
        )
    if data_root is None:
        raise UserError(f"dataset '{name}' needs --data-root (the folder that holds {REAL[name]}/)")
    dataset = _real(name, data_root, cache_dir)
    if unlabeled is not None:
        dataset.unlabeled = listing.image_folder(unlabeled, len(dataset.train), DATA_SEED)
    else:
        dataset.unlabeled = _pool_from_others(name, data_root, cache_dir, len(dataset.train))
    dataset.fingerprint = fingerprint(dataset)  # of the listing: paths, scores, groups
    return dataset
