"""`run_all.py --score DIR`: new images scored by a stored stage or a weights file, on images
written here (JPEG and PNG of several sizes and modes, a cut-short JPEG, text named .png), with
smoke-profile models that are built, not trained."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import run_all
from baselines import create_model, list_models
from baselines.registry import resolve_config
from bench.run.dag import RunRequest, stages_for
from bench.run.store import Store, write_json
from bench.train.methods import MethodOptions

BINS = [f"bin{k}" for k in range(1, 11)]
READABLE = ["a.jpg", "b.JPEG", "c.png", "gray.png", "sub/d.png"]
UNREADABLE = ["cut.jpg", "text.png"]


def _image(path: Path, width: int, height: int, seed: int, mode: str = "RGB") -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, quality=90)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    _image(root / "a.jpg", 64, 48, 0)
    _image(root / "b.JPEG", 33, 77, 1)
    _image(root / "c.png", 120, 90, 2, "RGBA")
    _image(root / "gray.png", 40, 40, 3, "L")
    _image(root / "sub" / "d.png", 50, 20, 4, "P")
    whole = (root / "a.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # a valid header, cut short
    (root / "text.png").write_text("not an image")
    (root / "notes.txt").write_text("not named as an image: ignored")
    return root


@pytest.fixture(scope="module")
def alone(folder, tmp_path_factory) -> Path:
    """A folder holding one of `folder`'s images, the only one of its batch."""
    root = tmp_path_factory.mktemp("alone")
    (root / "b.JPEG").write_bytes((folder / "b.JPEG").read_bytes())
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """A smoke model of every registered model, its state_dict saved as this harness does."""
    root = tmp_path_factory.mktemp("weights")
    files = {}
    for name in list_models():
        torch.manual_seed(1)
        files[name] = root / f"{name}.pt"
        torch.save(create_model(name, "smoke").state_dict(), files[name])
    return files


def _store(results: Path, stage, status: str = "ok", model_pt: Path | None = None) -> str:
    """Commit `stage` to the store as a finished stage would be, with `model_pt` as its
    model.pt."""
    store = Store(results)
    tmp = store.begin(stage.id)
    write_json(tmp / "config.json", stage.config)
    if model_pt is not None:
        (tmp / "model.pt").write_bytes(model_pt.read_bytes())
    reason = "" if status == "ok" else "Diverged: loss is NaN at epoch 1\nsecond line"
    write_json(tmp / "status.json", {"status": status, "reason": reason})
    store.commit(tmp, stage.id)
    return stage.id


def _swinv2(seed: int = 0, apds: bool = False, **request) -> list:
    """The chain of stages of a smoke run of swinv2 (bench.run.dag: their configs and ids)."""
    options = MethodOptions(apds=apds)
    return stages_for(RunRequest("synth-ava", "swinv2", "smoke", seed, options, **request))


@pytest.fixture(scope="module")
def store(tmp_path_factory, weights) -> tuple[Path, dict[str, str]]:
    """A results store with swinv2's round1, selftrain and evaluate stages (all from the same
    weights) and a failed round1 (another seed); the store and the stages' ids by kind."""
    root = tmp_path_factory.mktemp("results")
    file = weights["swinv2"]
    round1, selftrain = _swinv2(apds=True)
    evaluate = _swinv2(weights={"model": str(file)}, eval_only=True)[0]
    failed = _swinv2(seed=1)[0]
    assert [s.kind for s in (round1, selftrain, evaluate)] == ["round1", "selftrain", "evaluate"]
    ids = {
        "round1": _store(root, round1, model_pt=file),
        "selftrain": _store(root, selftrain, model_pt=file),
        "evaluate": _store(root, evaluate),
        "failed": _store(root, failed, status="failed"),
    }
    return root, ids


def _score(folder: Path, out: Path, *args: str, results: Path | None = None) -> int:
    extra = ["--results", str(results)] if results else []
    return run_all.main(["--score", str(folder), "--out", str(out), *args, *extra])


def test_every_readable_image_scored_the_unreadable_named_once(folder, store, tmp_path, capsys):
    results, ids = store
    stage = ids["round1"]
    out = tmp_path / "deeper" / "scores.csv"
    assert _score(folder, out, "--model", "swinv2", "--stage", stage, results=results) == 0
    captured = capsys.readouterr()
    table = pd.read_csv(out)
    assert list(table.columns) == ["file", "score", *BINS]
    assert sorted(table.file) == sorted(READABLE)
    assert np.allclose(table[BINS].sum(axis=1), 1, atol=1e-5)
    expected = table[BINS].to_numpy() @ np.arange(1, 11)
    assert np.allclose(table.score, expected, atol=1e-5)
    assert table.score.between(1, 10).all() and table.score.nunique() == len(READABLE)
    for name in UNREADABLE:
        named = [line for line in captured.err.splitlines() if str(folder / name) in line]
        assert len(named) == 1 and "unreadable image, skipped" in named[0]
    assert "notes.txt" not in captured.err
    assert f"{out}: 5 images scored with stage {stage}" in captured.out
    assert "2 unreadable skipped" in captured.out and "1 other file" in captured.out


def test_dry_run_names_the_stage_that_scores(store, capsys):
    results, ids = store
    args = ["--model", "swinv2", "--profile", "smoke", "--dry-run", "--results", str(results)]
    assert run_all.main(args) == 0
    assert f"{ids['round1']}  round1     cached" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(list_models()))
def test_an_image_scores_the_same_alone_and_in_a_batch(name, folder, alone, weights, tmp_path):
    args = ["--model", name, "--weights", f"{name}.model={weights[name]}", "--profile", "smoke"]
    assert _score(folder, tmp_path / "all.csv", *args) == 0
    assert _score(alone, tmp_path / "alone.csv", *args) == 0
    batch = pd.read_csv(tmp_path / "all.csv").set_index("file").loc[["b.JPEG"]]
    single = pd.read_csv(tmp_path / "alone.csv").set_index("file")
    assert np.abs(batch.to_numpy() - single.to_numpy()).max() < 1e-6


@pytest.mark.parametrize("kind", ["selftrain", "evaluate"])
def test_every_kind_of_stage_and_the_weights_file_score_alike(
    kind, folder, store, weights, tmp_path
):
    """round1 and selftrain stages hold model.pt; an evaluate stage names its weights files."""
    results, ids = store
    first = ["--model", "swinv2", "--stage", ids["round1"]]
    assert _score(folder, tmp_path / "round1.csv", *first, results=results) == 0
    other = ["--model", "swinv2", "--stage", ids[kind]]
    assert _score(folder, tmp_path / "other.csv", *other, results=results) == 0
    released = ["--model", "swinv2", "--weights", f"swinv2.model={weights['swinv2']}"]
    assert _score(folder, tmp_path / "file.csv", *released, "--profile", "smoke") == 0
    tables = [pd.read_csv(tmp_path / f"{n}.csv") for n in ("round1", "other", "file")]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


def test_a_released_file_recognised_by_its_keys(folder, weights, tmp_path):
    args = ["--model", "nima", "--weights", f"nima={weights['nima']}", "--profile", "smoke"]
    assert _score(folder, tmp_path / "nima.csv", *args) == 0
    assert len(pd.read_csv(tmp_path / "nima.csv")) == len(READABLE)


def test_a_score_head_leaves_the_bins_empty(folder, tmp_path, capsys):
    config, _ = resolve_config("biaa", "smoke", variants=("official_head",))
    torch.save(create_model("biaa", "smoke", config=config).state_dict(), tmp_path / "biaa.pt")
    args = ["--model", "biaa", "--weights", f"biaa.model={tmp_path / 'biaa.pt'}"]
    args += ["--profile", "smoke", "--variant", "biaa=official_head"]
    assert _score(folder, tmp_path / "biaa.csv", *args) == 0
    table = pd.read_csv(tmp_path / "biaa.csv")
    assert table.score.between(0, 10).all() and table[BINS].isna().all().all()
    assert "head gives one score: bin1..bin10 are left empty" in capsys.readouterr().err


def _one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    "stage, needles",
    [
        ("0123456789abcdef", ["0123456789abcdef", "no such stage"]),
        ("../../etc", ["--stage ../../etc: not a stage id"]),
        ("failed", ["the stage is failed (Diverged: loss is NaN at epoch 1)"]),
    ],
)
def test_a_stage_that_cannot_score_is_a_one_line_error(
    stage, needles, folder, store, tmp_path, capsys
):
    results, ids = store
    stage = ids.get(stage, stage)
    args = ["--model", "swinv2", "--stage", stage]
    assert _score(folder, tmp_path / "x.csv", *args, results=results) == 2
    _one_line_error(capsys, *needles)
    assert not (tmp_path / "x.csv").exists()


def test_a_stage_of_another_model_is_refused(folder, store, tmp_path, capsys):
    results, ids = store
    args = ["--model", "nima", "--stage", ids["round1"]]
    assert _score(folder, tmp_path / "x.csv", *args, results=results) == 2
    _one_line_error(capsys, "a stage of swinv2, not of --model nima")


@pytest.mark.parametrize("name, variant", [("tanet", "per_image"), ("eat", "per_sample")])
def test_a_batch_coupled_model_is_refused_naming_the_per_image_variant(
    name, variant, folder, weights, tmp_path, capsys
):
    args = ["--model", name, "--weights", f"{name}={weights[name]}", "--profile", "paper"]
    assert _score(folder, tmp_path / "x.csv", *args) == 2
    _one_line_error(capsys, str(weights[name]), f"--variant {name}={variant} scores each")


def test_bad_folders_are_one_line_errors(tmp_path, weights, capsys):
    args = ["--model", "nima", "--weights", f"nima={weights['nima']}", "--profile", "smoke"]
    assert _score(tmp_path / "missing", tmp_path / "x.csv", *args) == 2
    _one_line_error(capsys, "missing: --score folder not found")
    (tmp_path / "empty").mkdir()
    assert _score(tmp_path / "empty", tmp_path / "x.csv", *args) == 2
    _one_line_error(capsys, "empty: no image files")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_text("no")
    assert _score(tmp_path / "broken", tmp_path / "x.csv", *args) == 2
    assert capsys.readouterr().err.strip().endswith("none of its 1 image files is readable")


@pytest.mark.parametrize(
    "args",
    [
        ["--score", "DIR", "--model", "nima"],  # no --out
        ["--model", "nima", "--stage", "0123456789abcdef"],  # no --score
        ["--score", "DIR", "--out", "x.csv", "--table", "4"],
        ["--score", "DIR", "--out", "x.csv", "--model", "nima", "--methods", "tfa"],
    ],
)
def test_score_flags_out_of_place_are_a_usage_error(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_all.main(args)
    assert exit_.value.code == 2
    _one_line_error(capsys, "--score DIR takes --model M and --out FILE.csv")


def test_without_a_stage_or_weights_the_error_says_which(folder, tmp_path, capsys):
    assert _score(folder, tmp_path / "x.csv", "--model", "nima", "--profile", "smoke") == 2
    _one_line_error(capsys, "--score needs a trained nima: --stage ID or --weights nima=FILE")
