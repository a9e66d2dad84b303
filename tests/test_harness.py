"""The harness's hooks for baselines: per-image inputs beyond pixels, recipes, a part pre-trained
as its own stage, a model's own training procedure, evaluating trained weights, --model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import run_all
from baselines import registry
from bench.data.loading import batches
from bench.data.types import Split
from bench.run.dag import RunRequest, stages_for
from bench.run.grid import parse_weights
from bench.run.store import Store
from bench.train.loop import lr_schedule, make_optimizer, training_loss
from bench.train.methods import MethodOptions
from bench.train.settings import TrainSettings
from tests import toy_model

# Stage ids of Swin V2 runs, fixed when stage format 2 applied every recipe key (the EMD form
# became a recipe key, out of the method options), and again at generator version 4 (the
# embedded benchmark's name carries it; version 3 gave other bytes on AVX-512 CPUs): a stored
# stage must never be recomputed because the harness learned something new (new models,
# methods, variants or options off by default change no id).
GOLDEN_IDS = {
    ("cpu", "synth-ava", "base"): ["8bc36c0b2869e48c"],
    ("cpu", "synth-para", "base"): ["0def760f83aa6c3a"],
    ("cpu", "synth-ava", "elta"): ["b43c73b72f36898d", "80b5671b0c2febd8"],
    ("cpu", "synth-para", "elta"): ["03cc85086d3d3572", "1458b2984a20447a"],
    ("cpu", "synth-ava", "pixel"): ["0aafe96ee2aec03e"],
    ("smoke", "synth-ava", "base"): ["4851a6392f6f8758"],
    ("smoke", "synth-ava", "elta"): ["5ddddcd5ad3a7d29", "c3cf8623a5418780"],
}
OPTIONS = {
    "base": MethodOptions(),
    "elta": MethodOptions(tfa=True, flsa_weight=1.0, apds=True),
    "pixel": MethodOptions(tfa=True, tfa_level="pixel"),
}


@pytest.mark.parametrize("key", sorted(GOLDEN_IDS))
def test_existing_stage_ids_do_not_change(key):
    profile, dataset, options = key
    chain = stages_for(RunRequest(dataset, "swinv2", profile, 0, OPTIONS[options]))
    assert [stage.id for stage in chain] == GOLDEN_IDS[key]


def _split(n: int = 6, size: int = 8) -> Split:
    rng = np.random.default_rng(0)
    return Split(
        images=rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
        scores=np.linspace(2, 8, n).astype(np.float32),
        dists=None,
        ids=[str(i) for i in range(n)],
        aspect=np.arange(1, n + 1, dtype=np.float32) / 2,
    )


def test_batches_carry_the_extras_a_model_needs():
    split = _split()
    kwargs = dict(train=False, img_size=8, device=torch.device("cpu"), generator=torch.Generator())
    plain = next(batches(split, 4, **kwargs))
    assert plain.extras == {}
    assert plain.x.is_contiguous()  # NCHW, not the arrays' channels-last view (loading.py)
    batch = next(batches(split, 4, needs=("aspect", "size"), **kwargs))
    np.testing.assert_array_equal(batch.extras["aspect"].numpy(), [0.5, 1.0, 1.5, 2.0])
    assert batch.extras["size"].tolist() == [[8, 8]] * 4
    with pytest.raises(ValueError, match="unknown model needs"):
        next(batches(split, 4, needs=("depth",), **kwargs))


def test_aspect_preserving_file_batches_are_padded_with_their_sizes(tmp_path):
    paths = []
    for k, (w, h) in enumerate([(40, 20), (10, 30), (16, 16)]):
        paths.append(tmp_path / f"{k}.png")
        Image.new("RGB", (w, h), (200, 100, 50)).save(paths[-1])
    split = Split(paths, np.ones(3, np.float32), None, ["a", "b", "c"], np.ones(3, np.float32))
    batch = next(
        batches(
            split,
            3,
            train=False,
            img_size=8,
            device=torch.device("cpu"),
            generator=torch.Generator(),
            needs=("size",),
            max_side=20,
        )  # fmt: skip
    )
    # longer side capped at 20: 40 x 20 -> 20 x 10, 10 x 30 -> 7 x 20 (round(10 * 2/3) = 7)
    assert batch.extras["size"].tolist() == [[10, 20], [20, 7], [16, 16]]
    assert batch.x.shape == (3, 3, 20, 20)
    assert (batch.x[0, :, 10:, :] == 0).all() and (batch.x[1, :, :, 7:] == 0).all()
    assert (batch.x[2, :, :16, :16] != 0).all()


def test_recipe_optimizer_groups_and_schedule():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    model[0].bias.requires_grad_(False)  # frozen parameters are left out
    settings = TrainSettings(
        epochs=3, batch_size=2, lr=0.1, img_size=8, resize=None, num_workers=0,
        device=torch.device("cpu"), optimizer="sgd", momentum=0.9, nesterov=True,
        weight_decay=1e-4, lr_step=2, lr_gamma=0.5, param_lr={"1.": 0.01},
    )  # fmt: skip
    optimizer = make_optimizer(model, settings)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]
    groups = {g["lr"]: sum(p.numel() for p in g["params"]) for g in optimizer.param_groups}
    assert groups == {0.1: 6, 0.01: 4}
    assert optimizer.defaults["weight_decay"] == 1e-4
    schedule = lr_schedule(optimizer, settings)
    lrs = []
    for _ in range(5):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    expected = [[0.1, 0.01]] * 2 + [[0.05, 0.005]] * 2 + [[0.025, 0.0025]]  # halved every 2
    np.testing.assert_allclose(lrs, expected)
    once = replace(settings, lr_step=None, lr_milestones=(2,))
    optimizer = make_optimizer(model, once)
    schedule = lr_schedule(optimizer, once)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05])
    assert lr_schedule(optimizer, replace(once, lr_milestones=())) is None


class _NeedsAspect(torch.nn.Module):
    needs = ("aspect",)

    def forward_features(self, x, aspect):
        self.seen = aspect
        return torch.cat([x.flatten(1), aspect[:, None]], 1)

    def forward_head(self, z):
        return z[:, :10]


def test_pixel_level_tfa_mixes_the_extras_with_the_images():
    x = torch.randn(4, 12)
    targets = torch.tensor([2.0, 4.0, 6.0, 9.0])
    aspect = torch.tensor([1.0, 2.0, 3.0, 4.0])
    opts = MethodOptions(tfa=True, tfa_level="pixel", tfa_pairs=2)
    model = _NeedsAspect()
    training_loss(model, x, targets, 0, opts, torch.Generator().manual_seed(1), {"aspect": aspect})
    from elta import tfa

    i, j, lam = tfa.sample_pairs(targets, 2, opts.tau1, opts.tau2, torch.Generator().manual_seed(1))
    expected = torch.cat([aspect, lam * aspect[i] + (1 - lam) * aspect[j]])
    torch.testing.assert_close(model.seen, expected)


@pytest.fixture
def toy_registry(monkeypatch):
    entries = {**registry._registry(), "toy": toy_model.TOY_ENTRY}
    monkeypatch.setattr(registry, "_registry", lambda: entries)
    toy_model.Recording.calls.clear()


def test_a_pretrained_part_is_one_stage_shared_by_seeds_and_methods(toy_registry):
    chains = [
        stages_for(RunRequest("synth-ava", "toy", "smoke", seed, MethodOptions(**options)))
        for seed in (0, 1)
        for options in ({}, {"tfa": True})
    ]
    assert [[stage.kind for stage in chain] for chain in chains] == [["pretrain", "round1"]] * 4
    assert len({chain[0].id for chain in chains}) == 1
    assert len({chain[1].id for chain in chains}) == 4
    recipes = [RunRequest("synth-ava", "toy", "smoke", 0, MethodOptions(), recipe={"lr": lr})
               for lr in (1e-3, 2e-3)]  # fmt: skip
    assert len({stages_for(run)[0].id for run in recipes} | {chains[0][0].id}) == 1
    given = RunRequest("synth-ava", "toy", "smoke", 0, MethodOptions(), weights={"theme": "x.pt"})
    assert [stage.kind for stage in stages_for(given)] == ["round1"]  # a file gives the part


def test_toy_model_end_to_end_with_every_hook(toy_registry, tmp_path, capsys):
    args = ["--model", "toy", "--methods", "tfa,flsa,apds", "--profile", "smoke"]
    assert run_all.main([*args, "--jobs", "1", "--results", str(tmp_path)]) == 0
    store = Store(tmp_path)
    stages = {}
    for stage_dir in (tmp_path / "runs").iterdir():
        kind = json.loads((stage_dir / "config.json").read_text())["stage"]
        stages[kind] = stage_dir
        assert store.is_ok(stage_dir.name), (stage_dir / "log.txt").read_text()
    assert set(stages) == {"pretrain", "round1", "selftrain"}
    # The model's own procedure ran both training rounds, with its settings from the config.
    note = "from models.toml"
    assert toy_model.Recording.calls == [(0, note), (1, note), (0, note)]  # 2 + 1 smoke epochs
    # The pre-trained part reached the model, and stayed frozen through training.
    theme = torch.load(stages["pretrain"] / "theme.pt", weights_only=True)
    trained = torch.load(stages["selftrain"] / "model.pt", weights_only=True)
    for key, value in theme.items():
        torch.testing.assert_close(trained[f"theme.{key}"], value)
    assert json.loads((stages["pretrain"] / "metrics.json").read_text())["val"]["accuracy"] >= 0
    out = capsys.readouterr().out
    assert "toy" in out and "written:" in out

    # Evaluating the stored model without training gives its test metrics again.
    weights = f"toy.model={stages['selftrain'] / 'model.pt'}"
    evaluate = ["--model", "toy", "--eval-only", "--weights", weights, "--profile", "smoke"]
    assert run_all.main([*evaluate, "--jobs", "1", "--results", str(tmp_path)]) == 0
    kinds = {
        d: json.loads((d / "config.json").read_text())["stage"] for d in store.root.glob("runs/*")
    }
    evaluated = [d for d, kind in kinds.items() if kind == "evaluate"]
    assert len(evaluated) == 1 and len(kinds) == 4
    again = json.loads((evaluated[0] / "metrics.json").read_text())["test"]
    original = json.loads((stages["selftrain"] / "metrics.json").read_text())["test"]
    assert again == pytest.approx(original, abs=1e-6)


def test_whole_model_file_of_another_model_is_a_user_error(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save({"not": torch.zeros(1)}, path)
    args = ["--model", "swinv2", "--eval-only", "--weights", f"swinv2.model={path}"]
    assert run_all.main([*args, "--profile", "smoke", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: not a 'swinv2' model saved by this harness" in err
    assert len(err.strip().splitlines()) == 1


def test_single_run_of_swinv2_stands_beside_the_papers_table1(tmp_path, capsys):
    assert run_all.main(["--model", "swinv2", "--profile", "smoke", "--dry-run",
                         "--results", str(tmp_path)]) == 0  # fmt: skip
    assert "synth-ava/base/seed0" in capsys.readouterr().out
    spec = run_all_spec("swinv2", [])
    assert spec.stem == "run-base" and spec.paper_table == "1"


def run_all_spec(model: str, methods: list[str]):
    from tables.specs import single_run

    return single_run(model, methods)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "resnet"], "unknown model 'resnet'"),
        (["--model", "swinv2", "--methods", "tfa,mixup"], "unknown method(s) mixup"),
        (["--model", "swinv2", "--eval-only"], "--eval-only needs the trained model's file"),
        (["--table", "4", "--methods", "tfa"], "--methods and --eval-only go with --model"),
        (["--table", "1", "--model", "nima"], "Table 1's rows name their own models"),
        (["--table", "all", "--model", "nima"], "--table all has tables of every model"),
        (["--model", "swinv2", "--weights", "swinv2.=x"], "MODEL[.PART]=FILE"),
    ],
)
def test_bad_model_options_are_one_line_and_exit_code_2(args, needle, tmp_path, capsys):
    try:
        code = run_all.main([*args, "--profile", "smoke", "--results", str(tmp_path)])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_weights_parts_are_parsed_per_model(tmp_path):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"")
    b.write_bytes(b"")
    parsed = parse_weights([f"swinv2={a}", f"maxvit.backbone={b}", f"swinv2.model={b}"])
    assert parsed == {
        "swinv2": {"auto": str(Path(a).resolve()), "model": str(Path(b).resolve())},
        "maxvit": {"backbone": str(Path(b).resolve())},
    }


def test_every_recipe_in_the_registry_uses_known_keys():
    from bench.train.settings import RECIPE_KEYS

    for name in registry.list_models():
        for profile, config in registry.model_entry(name)["configs"].items():
            unknown = set(config.get("recipe", {})) - set(RECIPE_KEYS)
            assert not unknown, f"{name} ({profile}): unknown recipe keys {unknown}"


def test_runs_pin_torch_to_the_same_cpu_kernels_everywhere(tmp_path):
    import subprocess
    import sys

    code = (
        "import os, run_all\n"
        "for name in ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'MKL_CBWR'):\n"
        "    os.environ.pop(name, None)\n"
        "run_all.main(['--list'])\n"
        "import torch\n"
        "print(torch.backends.cpu.get_cpu_capability(), os.environ['ONEDNN_MAX_CPU_ISA'])\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] in ("AVX2 AVX2", "DEFAULT AVX2")  # no AVX2: default


def test_join_pads_batches_of_images_at_their_own_sizes():
    # MUSIQ's batches keep each image's size: a labelled batch padded to 4 x 6 and a
    # pseudo-labelled one padded to 5 x 3 join into 5 x 6, zero-padded at the bottom and right.
    from bench.data.loading import Batch
    from bench.train.loop import join

    labelled = Batch(torch.ones(2, 3, 4, 6), torch.zeros(2), torch.arange(2),
                     {"size": torch.tensor([[4, 6], [3, 5]])})  # fmt: skip
    pseudo = Batch(torch.full((1, 3, 5, 3), 2.0), torch.ones(1), torch.arange(1),
                   {"size": torch.tensor([[5, 3]])})  # fmt: skip
    x, targets, extras = join(labelled, pseudo)
    assert x.shape == (3, 3, 5, 6) and targets.tolist() == [0, 0, 1]
    assert x[:2, :, :4, :].eq(1).all() and x[:2, :, 4:, :].eq(0).all()
    assert x[2, :, :, :3].eq(2).all() and x[2, :, :, 3:].eq(0).all()
    assert extras["size"].tolist() == [[4, 6], [3, 5], [5, 3]]
