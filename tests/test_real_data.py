"""Tests of the real-dataset loaders on tiny fixture datasets written in the official formats."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.real import (
    LOADERS,
    dataset_dir,
    load_aadb,
    load_ava,
    load_para,
    load_tad66k,
    max_bad_images,
)
from iaa_common import UserError

# --- fixture writers --------------------------------------------------------------------------


def _jpeg(path: Path, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (shade % 256, 80, 160)).save(path, "JPEG")


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _ava_counts(i: int) -> list[int]:
    """Vote counts for AVA image number i; image 0 has mean rating (3*1 + 8*3) / 4 = 6.75."""
    counts = [0] * 10
    counts[(2 + i) % 10] += 1
    counts[(7 + 2 * i) % 10] += 3
    return counts


AVA_TRAIN = [(str(1000 + i), _ava_counts(i)) for i in range(10)]
AVA_TEST = [(str(2000 + i), _ava_counts(i + 10)) for i in range(4)]


def _ava_images(root: Path, rows: list[tuple[str, list[int]]]) -> None:
    for i, (image_id, _) in enumerate(rows):
        _jpeg(root / "images" / f"{image_id}.jpg", i)


def write_ava_csv(root: Path, train=AVA_TRAIN, test=AVA_TEST, val=None) -> Path:
    """AVA in the TANet/ELTA CSV form."""
    header = "image_id," + ",".join(f"score{j}" for j in range(2, 12)) + ",tag1,tag2,tag3"
    for split, rows in (("train", train), ("test", test), ("val", val)):
        if rows is not None:
            lines = [f"{i},{','.join(map(str, c))},15,21,1396" for i, c in rows]
            _write(root / f"{split}.csv", [header, *lines])
            _ava_images(root, rows)
    return root


def write_ava_txt(root: Path, train=AVA_TRAIN, test=AVA_TEST) -> Path:
    """AVA in its original form: AVA.txt plus the generic test list."""
    rows = [*train, *test]
    lines = [f"{n} {i} {' '.join(map(str, c))} 15 21 1396" for n, (i, c) in enumerate(rows, 1)]
    _write(root / "AVA.txt", lines)
    _write(root / "aesthetics_image_lists" / "generic_test.jpgl", [i for i, _ in test])
    _ava_images(root, rows)
    return root


AADB_SPLITS = {
    "Train": [(f"train_{i}.jpg", f"{0.05 * (i + 1):.2f}") for i in range(10)],
    "Validation": [("val_0.jpg", "0.55"), ("val_1.jpg", "0.9")],
    "TestNew": [("test_0.jpg", "0.3"), ("test_1.jpg", "1.0"), ("test_2.jpg", "0")],
}


def write_aadb(root: Path) -> Path:
    for split, rows in AADB_SPLITS.items():
        _write(
            root / "imgListFiles_label" / f"imgList{split}Regression_score.txt",
            [f"{name} {score}" for name, score in rows],
        )
        for i, (name, _) in enumerate(rows):
            _jpeg(root / "datasetImages_originalSize" / name, i)
    return root


def write_tad66k(root: Path, n_train: int = 20, n_test: int = 4) -> Path:
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [(f"{split}{i}.jpg", f"{(i * 0.37) % 10:.2f}") for i in range(n)]
        _write(
            root / "labels" / "merge" / f"{split}.csv",
            ["image,score"] + [",".join(r) for r in rows],
        )
        for i, (name, _) in enumerate(rows):
            _jpeg(root / "images" / name, i)
    return root


PARA_HEADER = (
    "userId,imageName,sessionId,"
    + ",".join(f"aestheticScore_{b / 2:.1f}" for b in range(2, 11))
    + ",aestheticScore_mean"
)


def write_para(root: Path) -> Path:
    splits = {
        "Train": [(f"iaa_pub{i}_.jpg", f"session{i % 3}", f"{1 + 0.4 * i:.1f}") for i in range(10)],
        "Test": [("iaa_pub100_.jpg", "session7", "3.2"), ("iaa_pub101_.jpg", "session7", "5")],
    }
    for split, rows in splits.items():
        bins = ",".join(["0.1"] * 9)
        lines = [
            f"A{n},{name},{session},{bins},{mean}" for n, (name, session, mean) in enumerate(rows)
        ]
        _write(root / "annotation" / f"PARA-Giaa{split}.csv", [PARA_HEADER, *lines])
        for i, (name, session, _) in enumerate(rows):
            _jpeg(root / "imgs" / session / name, i)
    return root


def _replace_line(path: Path, lineno: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    _write(path, lines)


# --- dataset_dir --------------------------------------------------------------------------------


def test_dataset_dir_is_case_insensitive(tmp_path):
    (tmp_path / "AVA").mkdir()
    (tmp_path / "tad66k").mkdir()
    for name in ("ava", "AVA", "Ava"):
        assert dataset_dir(tmp_path, name) == tmp_path / "AVA"
    assert dataset_dir(tmp_path, "TAD66K") == tmp_path / "tad66k"
    with pytest.raises(UserError, match="'para'.*not found"):
        dataset_dir(tmp_path, "para")
    with pytest.raises(UserError, match="nowhere"):
        dataset_dir(tmp_path / "nowhere", "ava")


def test_loaders_registry():
    assert LOADERS == {"ava": load_ava, "aadb": load_aadb, "tad66k": load_tad66k, "para": load_para}


# --- AVA ----------------------------------------------------------------------------------------


def test_ava_csv_sizes_scores_and_dists(tmp_path):
    root = write_ava_csv(tmp_path / "AVA")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_ava(root, val_fraction=0.2, seed=0)
    assert (data.name, data.label_kind) == ("ava", "dist")
    assert (len(data.train), len(data.val), len(data.test)) == (7, 3, 4)  # val: at least 3
    for split in (data.train, data.val, data.test):
        assert split.scores.dtype == np.float32 and split.dists.dtype == np.float32
        assert split.dists.shape == (len(split), 10)
        np.testing.assert_allclose(split.dists.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(split.scores, split.dists @ np.arange(1, 11), rtol=1e-5)
    scores = dict(
        zip(data.train.ids + data.val.ids, [*data.train.scores, *data.val.scores], strict=True)
    )
    assert scores["1000"] == pytest.approx(6.75)
    assert data.test.images[0] == root / "images" / "2000.jpg"


def test_ava_txt_and_csv_forms_agree(tmp_path):
    csv_data = load_ava(write_ava_csv(tmp_path / "csv"), val_fraction=0.2)
    txt_data = load_ava(write_ava_txt(tmp_path / "txt"), val_fraction=0.2)
    for name in ("train", "val", "test"):
        a, b = getattr(csv_data, name), getattr(txt_data, name)
        assert a.ids == b.ids
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.dists, b.dists)
    assert txt_data.test.ids == [i for i, _ in AVA_TEST]


def test_ava_prefers_csv_form(tmp_path):
    root = write_ava_txt(tmp_path / "AVA", train=AVA_TRAIN[2:], test=AVA_TEST + AVA_TRAIN[:2])
    write_ava_csv(root)
    assert load_ava(root, val_fraction=0.2).test.ids == [i for i, _ in AVA_TEST]


def test_ava_uses_official_val_csv(tmp_path):
    root = write_ava_csv(tmp_path / "AVA", train=AVA_TRAIN[:7], val=AVA_TRAIN[7:])
    data = load_ava(root)
    assert data.train.ids == [i for i, _ in AVA_TRAIN[:7]]
    assert data.val.ids == [i for i, _ in AVA_TRAIN[7:]]


def test_ava_zero_vote_rows_skipped_with_one_warning(tmp_path):
    train = [*AVA_TRAIN, ("3000", [0] * 10), ("3001", [0] * 10)]
    root = write_ava_csv(tmp_path / "AVA", train=train)
    with pytest.warns(UserWarning, match=r"train\.csv: skipped 2 row\(s\) with no votes"):
        data = load_ava(root, val_fraction=0.2)
    assert "3000" not in data.train.ids + data.val.ids
    assert len(data.train) + len(data.val) == len(AVA_TRAIN)


def test_ava_negative_count_raises(tmp_path):
    root = write_ava_csv(tmp_path / "AVA")
    _replace_line(root / "train.csv", 3, "1001,1,2,-3,0,0,0,0,0,0,0,15,21,1396")
    with pytest.raises(UserError, match=r"train\.csv, line 3: negative vote count"):
        load_ava(root)


def test_ava_txt_wrong_field_count_raises(tmp_path):
    root = write_ava_txt(tmp_path / "AVA")
    _replace_line(root / "AVA.txt", 2, "2 1001 1 2 3")
    with pytest.raises(UserError, match=r"AVA\.txt, line 2: expected 15 fields, found 5"):
        load_ava(root)


def test_ava_missing_annotation_files(tmp_path):
    (tmp_path / "AVA").mkdir()
    with pytest.raises(UserError, match=r"train\.csv.*AVA\.txt"):
        load_ava(tmp_path / "AVA")
    root = write_ava_txt(tmp_path / "txt")
    (root / "aesthetics_image_lists" / "generic_test.jpgl").unlink()
    with pytest.raises(UserError, match=r"missing annotation file.*generic_test\.jpgl"):
        load_ava(root)
    root = write_ava_csv(tmp_path / "csv")
    (root / "test.csv").unlink()
    with pytest.raises(UserError, match=r"missing annotation file.*test\.csv"):
        load_ava(root)


def test_ava_split_with_no_voted_rows_is_empty_error(tmp_path):
    root = write_ava_csv(tmp_path / "AVA", test=[("3000", [0] * 10)])
    with (
        pytest.warns(UserWarning),
        pytest.raises(UserError, match=r"test\.csv \(test split\).*empty"),
    ):
        load_ava(root)


# --- AADB ---------------------------------------------------------------------------------------


def test_aadb_official_splits_and_scores(tmp_path):
    root = write_aadb(tmp_path / "AADB")
    data = load_aadb(root)
    assert (data.name, data.label_kind) == ("aadb", "scalar")
    assert (len(data.train), len(data.val), len(data.test)) == (10, 2, 3)
    assert data.train.dists is None and data.val.dists is None
    assert data.val.ids == ["val_0.jpg", "val_1.jpg"]
    np.testing.assert_allclose(data.val.scores, [5.5, 9.0], rtol=1e-6)
    np.testing.assert_allclose(data.test.scores, [3.0, 10.0, 0.0], rtol=1e-6)
    assert data.test.images[0] == root / "datasetImages_originalSize" / "test_0.jpg"


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("train_1.jpg 1.2", r"line 2: score 1\.2 is outside \[0, 1\]"),
        ("train_1.jpg -0.1", r"line 2: score -0\.1 is outside"),
        ("train_1.jpg 0.5 extra", r"line 2: expected 2 fields"),
        ("train_1.jpg high", r"line 2: score 'high' is not a number"),
        ("train_1.jpg nan", r"line 2: score is NaN"),
    ],
)
def test_aadb_bad_lines_raise(tmp_path, line, match):
    root = write_aadb(tmp_path / "AADB")
    _replace_line(root / "imgListFiles_label" / "imgListTrainRegression_score.txt", 2, line)
    with pytest.raises(UserError, match=r"imgListTrainRegression_score\.txt, " + match):
        load_aadb(root)


def test_aadb_empty_and_missing_files(tmp_path):
    root = write_aadb(tmp_path / "AADB")
    val_file = root / "imgListFiles_label" / "imgListValidationRegression_score.txt"
    val_file.write_text("\n")
    with pytest.raises(UserError, match=r"imgListValidationRegression_score\.txt: .*empty"):
        load_aadb(root)
    val_file.unlink()
    with pytest.raises(UserError, match=r"expected .*imgListValidationRegression_score\.txt"):
        load_aadb(root)


# --- TAD66K -------------------------------------------------------------------------------------


def test_tad66k_sizes_and_scores(tmp_path):
    root = write_tad66k(tmp_path / "TAD66K")
    data = load_tad66k(root, val_fraction=0.25)
    assert (data.name, data.label_kind) == ("tad66k", "scalar")
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 4)
    assert data.test.ids == ["test0.jpg", "test1.jpg", "test2.jpg", "test3.jpg"]
    np.testing.assert_allclose(data.test.scores, [0.0, 0.37, 0.74, 1.11], rtol=1e-6)
    assert data.test.images[1] == root / "images" / "test1.jpg"


def test_val_is_carved_deterministically(tmp_path):
    root = write_tad66k(tmp_path / "TAD66K")
    first, again = load_tad66k(root, seed=3), load_tad66k(root, seed=3)
    other = load_tad66k(root, seed=4)
    assert first.val.ids == again.val.ids and first.train.ids == again.train.ids
    assert set(first.val.ids) != set(other.val.ids)
    assert len(first.val) == 3  # 10 % of 20 is 2: a carved split holds at least 3 images
    assert not set(first.val.ids) & set(first.train.ids)
    assert sorted(first.val.ids + first.train.ids) == sorted(f"train{i}.jpg" for i in range(20))
    scores = dict(
        zip(first.train.ids + first.val.ids, [*first.train.scores, *first.val.scores], strict=True)
    )
    assert scores["train3.jpg"] == pytest.approx(1.11)


@pytest.mark.parametrize(
    ("lineno", "line", "match"),
    [
        (3, "train1.jpg,10.5", r"train\.csv, line 3: score 10\.5 is outside \[0, 10\]"),
        (3, "train1.jpg,NaN", r"train\.csv, line 3: score is NaN"),
        (4, "train2.jpg,5,extra", r"train\.csv, line 4: expected 2 comma-separated fields"),
        (1, "image,rating", r"train\.csv: header lacks required column\(s\) score"),
    ],
)
def test_tad66k_bad_csv_raises(tmp_path, lineno, line, match):
    root = write_tad66k(tmp_path / "TAD66K")
    _replace_line(root / "labels" / "merge" / "train.csv", lineno, line)
    with pytest.raises(UserError, match=match):
        load_tad66k(root)


def test_tad66k_empty_and_missing_files(tmp_path):
    root = write_tad66k(tmp_path / "TAD66K")
    train_file = root / "labels" / "merge" / "train.csv"
    train_file.write_text("image,score\n")
    with pytest.raises(UserError, match=r"train\.csv: annotation file is empty"):
        load_tad66k(root)
    train_file.write_text("")
    with pytest.raises(UserError, match=r"train\.csv: annotation file is empty"):
        load_tad66k(root)
    root = write_tad66k(tmp_path / "other")
    (root / "labels" / "merge" / "test.csv").unlink()
    with pytest.raises(UserError, match=r"missing annotation file.*merge/test\.csv"):
        load_tad66k(root)


def test_missing_and_unreadable_images_skipped_with_one_warning(tmp_path):
    root = write_tad66k(tmp_path / "TAD66K")
    (root / "images" / "train5.jpg").unlink()
    (root / "images" / "train7.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match=r"train\.csv \(train split\): skipped 2 of 20") as record:
        data = load_tad66k(root)
    assert len(record) == 1 and "train5.jpg" in str(record[0].message)
    kept = data.train.ids + data.val.ids
    assert len(kept) == 18 and "train5.jpg" not in kept and "train7.jpg" not in kept


def test_too_many_missing_images_raise(tmp_path):
    root = write_tad66k(tmp_path / "TAD66K")
    assert max_bad_images(20) == 10 and max_bad_images(5000) == 50
    for i in range(3, 14):
        (root / "images" / f"train{i}.jpg").unlink()
    with pytest.raises(UserError, match=r"train\.csv \(train split\): 11 of 20 .*train3\.jpg"):
        load_tad66k(root)


def test_split_left_empty_by_missing_images_raises(tmp_path):
    root = write_tad66k(tmp_path / "TAD66K")
    for i in range(4):
        (root / "images" / f"test{i}.jpg").unlink()
    with (
        pytest.warns(UserWarning),
        pytest.raises(UserError, match=r"test\.csv \(test split\).*empty"),
    ):
        load_tad66k(root)


def test_too_small_train_for_val_raises(tmp_path):
    root = write_tad66k(tmp_path / "TAD66K", n_train=1)
    with pytest.raises(UserError, match=r"train\.csv \(train split\).*too few"):
        load_tad66k(root)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_val_fraction_out_of_range_raises(tmp_path, fraction):
    root = write_tad66k(tmp_path / "TAD66K")
    with pytest.raises(UserError, match="val_fraction must be between 0 and 1"):
        load_tad66k(root, val_fraction=fraction)


# --- PARA ---------------------------------------------------------------------------------------


def test_para_scores_doubled_and_image_paths(tmp_path):
    root = write_para(tmp_path / "PARA")
    data = load_para(root, val_fraction=0.2)
    assert (data.name, data.label_kind) == ("para", "scalar")
    assert (len(data.train), len(data.val), len(data.test)) == (7, 3, 2)  # val: at least 3
    assert data.test.ids == ["session7/iaa_pub100_.jpg", "session7/iaa_pub101_.jpg"]
    np.testing.assert_allclose(data.test.scores, [6.4, 10.0], rtol=1e-6)
    assert data.test.images[0] == root / "imgs" / "session7" / "iaa_pub100_.jpg"
    assert data.train.dists is None


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (
            "A0,iaa_pub0_.jpg,session0," + ",".join(["0.1"] * 9) + ",0.5",
            r"PARA-GiaaTrain\.csv, line 2: aestheticScore_mean 0\.5 is outside \[1, 5\]",
        ),
        (
            "A0,iaa_pub0_.jpg,session0," + ",".join(["0.1"] * 9) + ",",
            r"PARA-GiaaTrain\.csv, line 2: aestheticScore_mean '' is not a number",
        ),
        (
            PARA_HEADER.replace("aestheticScore_mean", "aestheticScore_avg"),
            r"PARA-GiaaTrain\.csv: header lacks required column\(s\) aestheticScore_mean",
        ),
    ],
)
def test_para_bad_csv_raises(tmp_path, line, match):
    root = write_para(tmp_path / "PARA")
    lineno = 1 if line.startswith("userId") else 2
    _replace_line(root / "annotation" / "PARA-GiaaTrain.csv", lineno, line)
    with pytest.raises(UserError, match=match):
        load_para(root)
