"""A real dataset's checked listing is cached under a key of its files' state; --unlabeled."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from bench.data import listing, real, registry
from bench.profiles import get_profile
from bench.run.dag import RunRequest, stages_for
from bench.train.methods import MethodOptions
from tests.test_real_data import write_aadb

PROFILE = get_profile("smoke")


def _load(root, cache, **kwargs):
    return registry.load_dataset("aadb", PROFILE, root, cache, **kwargs)


def test_a_warm_load_reads_the_cached_listing_until_a_file_changes(tmp_path, monkeypatch):
    write_aadb(tmp_path / "AADB")
    Image.new("RGB", (30, 20)).save(tmp_path / "AADB/datasetImages_originalSize/train_0.jpg")
    first = _load(tmp_path, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "real").glob("aadb-*.npz"))) == 1

    calls = []
    checked = real.LOADERS["aadb"]
    monkeypatch.setitem(real.LOADERS, "aadb", lambda *a, **k: calls.append(1) or checked(*a, **k))
    again = _load(tmp_path, tmp_path / "cache")
    assert calls == []  # from the cache
    for name in ("train", "val", "test"):
        a, b = getattr(first, name), getattr(again, name)
        assert [str(p) for p in a.images] == [str(p) for p in b.images] and a.ids == b.ids
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.aspect_ratios(), b.aspect_ratios())
    assert again.train.aspect_ratios()[again.train.ids.index("train_0.jpg")] == np.float32(1.5)
    assert first.fingerprint == again.fingerprint

    test_list = tmp_path / "AADB/imgListFiles_label/imgListTestNewRegression_score.txt"
    test_list.write_text(test_list.read_text().replace("0.3", "0.4"))  # an annotation changes
    assert _load(tmp_path, tmp_path / "cache").test.scores[0] == np.float32(4.0)
    assert calls == [1]
    image = tmp_path / "AADB/datasetImages_originalSize/test_0.jpg"
    os.utime(image, ns=(1, 1))  # an image changes
    _load(tmp_path, tmp_path / "cache")
    assert calls == [1, 1]


def test_header_checks_in_processes_give_what_threads_give(tmp_path, monkeypatch):
    paths = []
    for k, size in enumerate([(10, 20), (30, 15), (8, 8)]):
        paths.append(tmp_path / f"{k}.png")
        Image.new("RGB", size).save(paths[-1])
    paths.append(tmp_path / "missing.png")
    threads = real.readable_aspects(paths)
    monkeypatch.setattr(real, "PROCESSES_FROM", 1)
    assert real.readable_aspects(paths) == threads == [0.5, 2.0, 1.0, None]


def test_unlabeled_folder_is_the_pool_and_in_the_stage_identity_only_when_given(tmp_path):
    write_aadb(tmp_path / "AADB")
    pool = tmp_path / "pool"
    (pool / "sub").mkdir(parents=True)
    for k in range(15):
        Image.new("RGB", (16 + k, 16)).save(pool / ("sub" if k % 2 else ".") / f"{k}.jpg")
    (pool / "notes.txt").write_text("not an image")
    data = _load(tmp_path, tmp_path / "cache", unlabeled=pool)
    assert len(data.unlabeled) == len(data.train) == 10  # capped at the training set
    assert np.isnan(data.unlabeled.scores).all() and data.unlabeled.dists is None
    assert all(str(p).endswith(".jpg") for p in data.unlabeled.images)
    widths = {int(i.rsplit("/", 1)[-1][:-4]) + 16 for i in data.unlabeled.ids}
    assert sorted(widths) == sorted(np.round(data.unlabeled.aspect * 16).astype(int).tolist())
    plain = RunRequest("aadb", "swinv2", "smoke", 0, MethodOptions(), str(tmp_path))
    with_pool = RunRequest("aadb", "swinv2", "smoke", 0, MethodOptions(), str(tmp_path),
                           unlabeled=str(pool))  # fmt: skip
    assert "unlabeled" not in stages_for(plain)[0].config
    assert stages_for(with_pool)[0].config["unlabeled"] == str(pool)


def test_a_missing_unlabeled_folder_is_a_one_line_error(tmp_path, capsys):
    import run_all

    args = ["--model", "swinv2", "--profile", "smoke", "--unlabeled", str(tmp_path / "none")]
    assert run_all.main([*args, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--unlabeled folder not found" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".csv", ".txt", ".jpgl"])
def test_annotation_files_count_by_content(tmp_path, suffix):
    annotation = tmp_path / f"labels{suffix}"
    annotation.write_text("a 1\n")
    before = listing.state_key(tmp_path)
    stat = annotation.stat()
    annotation.write_text("a 2\n")
    os.utime(annotation, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time
    assert listing.state_key(tmp_path) != before


def test_an_image_folder_linked_from_elsewhere_counts(tmp_path):
    elsewhere = tmp_path / "disk" / "images"
    elsewhere.mkdir(parents=True)
    (elsewhere / "1.jpg").write_bytes(b"x")
    dataset = tmp_path / "AVA"
    dataset.mkdir()
    (dataset / "AVA.txt").write_text("1 1\n")
    (dataset / "images").symlink_to(elsewhere, target_is_directory=True)
    before = listing.state_key(dataset)
    (elsewhere / "2.jpg").write_bytes(b"y")
    assert listing.state_key(dataset) != before


def test_the_ava_scale_benchmark_loads_cold_then_warm(capsys):
    from bench.dev import listing_perf

    listing_perf.main(["--rows", "300"])
    out = capsys.readouterr().out
    assert "cold (every header checked)" in out and "warm (the cached listing)" in out
    assert "256 train / 14 val / 30 test images" in out  # 10 % test; val: 5 % of the rest
