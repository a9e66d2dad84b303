"""What the real loaders carry beyond labels: group ids (BIAA's tasks) and aspect ratios (HGCN)."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from bench.data.real import load_aadb, load_ava, load_para, load_tad66k
from tests.test_real_data import (
    AVA_TEST,
    AVA_TRAIN,
    _write,
    write_aadb,
    write_ava_csv,
    write_ava_txt,
    write_para,
    write_tad66k,
)


def _with_challenges(path, challenges: dict[str, str]) -> None:
    """Rewrite the last field (the challenge id) of the AVA rows named in `challenges`."""
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        sep = "," if "," in line else " "
        fields = line.split(sep)
        image_id = fields[0] if sep == "," else fields[1]
        if image_id in challenges:
            fields[-1] = challenges[image_id]
        out.append(sep.join(fields))
    path.write_text("\n".join(out) + "\n")


def test_ava_groups_are_challenges_with_one_id_per_challenge_across_splits(tmp_path):
    challenges = {"1000": "77", "1001": "5", "1002": "77", "2000": "5", "2001": "9"}
    csv_root = write_ava_csv(tmp_path / "csv")
    for name in ("train.csv", "test.csv"):
        _with_challenges(csv_root / name, challenges)
    txt_root = write_ava_txt(tmp_path / "txt")
    _with_challenges(txt_root / "AVA.txt", challenges)
    for root in (csv_root, txt_root):
        data = load_ava(root, val_fraction=0.2, seed=0)
        by_id = {}
        for split in (data.train, data.val, data.test):
            by_id.update(zip(split.ids, split.group.tolist(), strict=True))
        # sorted challenge names: "1396" (the fixture's default), "5", "77", "9" -> 0, 1, 2, 3
        assert by_id["1000"] == by_id["1002"] == 2
        assert by_id["1001"] == by_id["2000"] == 1
        assert by_id["2001"] == 3
        assert by_id["1003"] == 0
        assert len(by_id) == len(AVA_TRAIN) + len(AVA_TEST)


def test_para_groups_are_sessions(tmp_path):
    data = load_para(write_para(tmp_path / "PARA"), val_fraction=0.2, seed=0)
    sessions = {"session0": 0, "session1": 1, "session2": 2, "session7": 3}
    for split in (data.train, data.val, data.test):
        expected = [sessions[image_id.split("/")[0]] for image_id in split.ids]
        assert split.group.tolist() == expected


def test_tad66k_groups_are_themes_from_the_unmerged_files(tmp_path):
    root = write_tad66k(tmp_path / "TAD66K")
    assert load_tad66k(root, seed=0).train.group is None  # no per-theme files: no groups
    for split, n in (("train", 20), ("test", 4)):  # even images are night, odd ones animal
        names = [f"{split}{i}.jpg" for i in range(n)]
        for theme, listed in (("night", names[::2]), ("animal", names[1::2])):
            lines = ["image,score", *[f"{name},5" for name in listed]]
            _write(root / "labels" / "unmerge" / split / f"{theme}.csv", lines)
    data = load_tad66k(root, seed=0)
    for split in (data.train, data.val, data.test):
        number = [int(re.fullmatch(r"(train|test)(\d+)\.jpg", i).group(2)) for i in split.ids]
        assert split.group.tolist() == [1 if k % 2 == 0 else 0 for k in number]  # animal 0


def test_aadb_has_no_groups_and_aspect_ratios_come_from_the_files(tmp_path):
    root = write_aadb(tmp_path / "AADB")
    Image.new("RGB", (30, 20)).save(root / "datasetImages_originalSize" / "train_0.jpg")
    Image.new("RGB", (12, 36)).save(root / "datasetImages_originalSize" / "test_1.jpg")
    data = load_aadb(root)
    assert data.train.group is None
    aspect = dict(
        zip(data.train.ids + data.test.ids, [*data.train.aspect, *data.test.aspect], strict=True)
    )
    assert aspect["train_0.jpg"] == np.float32(1.5)
    assert aspect["test_1.jpg"] == np.float32(1 / 3)
    assert aspect["train_1.jpg"] == 1.0  # the fixture's other images are 16 x 16
    np.testing.assert_array_equal(data.train.subset(np.array([0])).aspect, [1.5])
