"""Tests of the fixture generator (bench/data/fixtures.py): the four datasets it writes are read
by the project's own loaders and registry unchanged, and writing is idempotent and seeded."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data import fixtures
from bench.data.fixtures import (
    DEFAULT_N_TEST,
    DEFAULT_N_TRAIN,
    DEFAULT_N_VAL,
    FOLDERS,
    LONG_SIDE,
    MARKER,
    is_current,
    write_fixtures,
)
from bench.data.real import dataset_dir, load_aadb, load_ava, load_para, load_tad66k
from bench.data.registry import REAL, load_dataset
from bench.data.types import IAADataset
from bench.profiles import get_profile
from iaa_common import UserError

LOADERS = {"ava": load_ava, "aadb": load_aadb, "tad66k": load_tad66k, "para": load_para}
# scores on the paper's 10-point scale: AVA's mean rating 1-10, AADB 10 x [0, 1],
# TAD66K 0-10, PARA 2 x [1, 5]
SCORE_RANGE = {"ava": (1, 10), "aadb": (0, 10), "tad66k": (0, 10), "para": (2, 10)}
SMALL = {"n_train": 2, "n_test": 1, "n_val": 1}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The default fixture, written once for the module (tests must not change it)."""
    root = tmp_path_factory.mktemp("fixtures")
    write_fixtures(root, seed=0)
    return root


@pytest.fixture(scope="module")
def loaded(root) -> dict[str, IAADataset]:
    """Each dataset through its real loader, with warnings (skipped rows, images) as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return {name: LOADERS[name](dataset_dir(root, FOLDERS[name])) for name in FOLDERS}


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _annotations(root: Path) -> dict[str, bytes]:
    return {
        name: path.read_bytes()
        for name, path in _files(root).items()
        if path.suffix in {".txt", ".csv", ".jpgl"}
    }


def _sizes(data: IAADataset) -> tuple[int, int, int]:
    return len(data.train), len(data.val), len(data.test)


def test_folders_match_the_registry(root):
    assert FOLDERS == REAL
    assert write_fixtures(root) == {name: root / folder for name, folder in FOLDERS.items()}
    for name, folder in FOLDERS.items():
        assert dataset_dir(root, folder) == root / folder
        assert dataset_dir(root, name) == root / folder


def test_official_annotation_files(root):
    ava = (root / "AVA" / "AVA.txt").read_text().splitlines()
    assert len(ava) == DEFAULT_N_TRAIN + DEFAULT_N_TEST
    for n, line in enumerate(ava, 1):
        fields = [int(f) for f in line.split()]
        assert len(fields) == 15 and fields[0] == n
        assert 100 <= sum(fields[2:12]) <= 250  # votes an image
        assert 1 <= fields[12] <= 66 and 0 <= fields[13] <= 66 and fields[14] >= 1
    test_list = (root / "AVA" / "aesthetics_image_lists" / "generic_test.jpgl").read_text()
    assert len(test_list.split()) == DEFAULT_N_TEST
    assert set(test_list.split()) <= {line.split()[1] for line in ava}

    lists = root / "AADB" / "imgListFiles_label"
    for name, n in (
        ("imgListTrainRegression_score.txt", DEFAULT_N_TRAIN),
        ("imgListValidationRegression_score.txt", DEFAULT_N_VAL),
        ("imgListTestNewRegression_score.txt", DEFAULT_N_TEST),
    ):
        lines = (lists / name).read_text().splitlines()
        assert len(lines) == n
        for line in lines:
            filename, score = line.split()
            assert filename.startswith("farm") and filename.endswith("_b.jpg")
            assert len(filename.split("_")) == 5
            assert 0 <= float(score) <= 1

    merged = root / "TAD66K" / "labels" / "merge"
    for split in ("train", "test"):
        lines = (merged / f"{split}.csv").read_text().splitlines()
        assert lines[0] == "image,score"
        themed = [
            line
            for path in sorted((root / "TAD66K" / "labels" / "unmerge" / split).glob("*.csv"))
            for line in path.read_text().splitlines()[1:]
        ]
        assert sorted(themed) == sorted(lines[1:])  # every image in exactly one theme

    header = (root / "PARA" / "annotation" / "PARA-GiaaTrain.csv").read_text().splitlines()[0]
    columns = header.split(",")
    steps = ("1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0", "4.5", "5.0")
    bins = [f"aestheticScore_{step}" for step in steps]
    assert columns[:11] == ["imageName", "sessionId", *bins]
    for column in ("aestheticScore_mean", "qualityScore_mean", "difficultyOfJudgment"):
        assert column in columns


def test_real_loaders_read_every_dataset(loaded):
    for name, data in loaded.items():
        assert data.name == name
        if name == "aadb":  # the official validation list
            assert _sizes(data) == (DEFAULT_N_TRAIN, DEFAULT_N_VAL, DEFAULT_N_TEST)
        else:  # val carved out of train by the loader
            assert len(data.train) + len(data.val) == DEFAULT_N_TRAIN
            assert len(data.val) >= 1 and len(data.test) == DEFAULT_N_TEST
        low, high = SCORE_RANGE[name]
        scores = np.concatenate([data.train.scores, data.val.scores, data.test.scores])
        assert np.isfinite(scores).all() and (low <= scores).all() and (scores <= high).all()
        assert 3.5 <= np.median(scores) <= 7.0  # mid-range, like the real datasets
        assert len(np.unique(scores)) >= 4
    ava = loaded["ava"]
    assert ava.label_kind == "dist"
    for split in (ava.train, ava.val, ava.test):
        np.testing.assert_allclose(split.dists.sum(axis=1), 1, rtol=1e-5)
        np.testing.assert_allclose(split.scores, split.dists @ np.arange(1, 11), rtol=1e-4)
    aadb = np.concatenate([loaded["aadb"].train.scores, loaded["aadb"].test.scores])
    np.testing.assert_allclose(aadb * 2, np.round(aadb * 2), atol=1e-4)  # 0.05 steps x 10


def test_groups_where_the_format_has_them(loaded):
    for name in ("ava", "tad66k", "para"):  # challenge, theme, session
        data = loaded[name]
        groups = np.concatenate([data.train.group, data.val.group, data.test.group])
        assert (groups >= 0).all() and len(np.unique(groups)) >= 2
    assert loaded["aadb"].train.group is None
    para = loaded["para"]
    for image_id, path in zip(para.train.ids, para.train.images, strict=True):
        assert image_id.split("/")[0] == Path(path).parent.name  # <sessionId>/<imageName>


def test_images_decode_at_realistic_sizes(loaded):
    for name, data in loaded.items():
        low, high = LONG_SIDE[name]
        for split in (data.train, data.val, data.test):
            aspects = split.aspect_ratios()
            for path, aspect in zip(split.images, aspects, strict=True):
                with Image.open(path) as image:
                    assert image.format == "JPEG"
                    image.load()  # decodes the pixels
                    width, height = image.size
                assert image.mode == "RGB"
                assert low <= max(width, height) <= high
                assert 2 / 3 - 0.01 <= width / height <= 3 / 2 + 0.01
                assert aspect == pytest.approx(width / height, rel=1e-5)
        all_aspects = np.concatenate([data.train.aspect, data.val.aspect, data.test.aspect])
        assert (all_aspects < 1).any() and (all_aspects > 1).any()  # portraits and landscapes
        assert (all_aspects != 1).mean() > 0.5


def test_registry_loads_with_pool_from_the_other_datasets(root, loaded, tmp_path):
    profile = get_profile("paper")
    folders = {name: (root / folder).resolve() for name, folder in FOLDERS.items()}
    for name in FOLDERS:
        data = load_dataset(name, profile, root, tmp_path / "cache")
        assert _sizes(data) == _sizes(loaded[name])
        np.testing.assert_allclose(data.test.scores, loaded[name].test.scores)
        pool = data.unlabeled
        assert pool is not None and len(pool) == len(data.train)
        assert np.isnan(pool.scores).all()
        owners = {
            other
            for path in pool.images
            for other, folder in folders.items()
            if Path(path).resolve().is_relative_to(folder)
        }
        assert owners and name not in owners and len(owners) >= 2
        assert data.fingerprint


def test_second_call_writes_nothing(root):
    before = {name: path.stat().st_mtime_ns for name, path in _files(root).items()}
    assert is_current(root)
    write_fixtures(root, seed=0)
    after = {name: path.stat().st_mtime_ns for name, path in _files(root).items()}
    assert after == before
    assert MARKER in before


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first, second, other = tmp_path / "first", tmp_path / "second", tmp_path / "other"
    write_fixtures(first, seed=3, **SMALL)
    write_fixtures(second, seed=3, **SMALL)
    assert _annotations(first) == _annotations(second)
    files, again = _files(first), _files(second)
    assert files.keys() == again.keys()
    for name in files:  # the images too, for one Pillow
        assert files[name].read_bytes() == again[name].read_bytes()
    write_fixtures(other, seed=4, **SMALL)
    for annotation in ("AVA/AVA.txt", "TAD66K/labels/merge/train.csv"):
        assert (other / annotation).read_bytes() != (first / annotation).read_bytes()


def test_other_parameters_or_missing_files_rewrite(tmp_path):
    write_fixtures(tmp_path, **SMALL)
    assert is_current(tmp_path, **SMALL) and not is_current(tmp_path)
    stale = tmp_path / "AVA" / "stale.jpg"
    stale.write_bytes(b"")
    write_fixtures(tmp_path, **{**SMALL, "n_test": 2})  # replaces the folders
    assert not stale.exists()
    assert is_current(tmp_path, **{**SMALL, "n_test": 2})
    test_list = tmp_path / "AVA" / "aesthetics_image_lists" / "generic_test.jpgl"
    assert len(test_list.read_text().split()) == 2
    image = next((tmp_path / "PARA" / "imgs").rglob("*.jpg"))
    image.unlink()
    assert not is_current(tmp_path, **{**SMALL, "n_test": 2})
    write_fixtures(tmp_path, **{**SMALL, "n_test": 2})
    assert image.exists()


def test_refuses_to_overwrite_folders_it_did_not_write(tmp_path):
    real = tmp_path / "ava"  # matched case-insensitively, like dataset_dir
    real.mkdir()
    (real / "AVA.txt").write_text("1 2 3\n")
    with pytest.raises(UserError, match="not written by"):
        write_fixtures(tmp_path, **SMALL)
    assert (real / "AVA.txt").read_text() == "1 2 3\n"
    with pytest.raises(UserError, match="n_train"):
        write_fixtures(tmp_path / "x", n_train=1)


def test_command_line(tmp_path, capsys):
    argv = [str(tmp_path), "--n-train", "3", "--n-test", "2", "--n-val", "1", "--seed", "5"]
    fixtures.main(argv)
    out = capsys.readouterr().out
    assert "written in" in out and "NOT data" in out
    for written in ("AVA.txt", "TrainRegression_score.txt", "train.csv", "PARA-GiaaTest.csv"):
        assert written in out
    assert "21 JPEG images" not in out and "6 JPEG images" in out  # AADB: 3 + 1 + 2
    fixtures.main(argv)
    assert "up to date" in capsys.readouterr().out
    images = [name for name in _files(tmp_path) if name.endswith(".jpg")]
    assert len(images) == 3 * (3 + 2) + (3 + 1 + 2)
