"""Every recipe key is applied: each model's paper recipe reaches the optimizer, the learning-rate
schedule, the loss and the transforms (bench/train/settings.py), and the models' official forms
and their variants resolve as models.toml says (baselines/registry.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision import transforms

from baselines import registry
from bench.data.loading import _file_transform
from bench.profiles import get_profile
from bench.train.loop import lr_schedule, make_optimizer
from bench.train.losses import batch_loss
from bench.train.settings import RECIPE_KEYS, train_settings
from iaa_common import UserError

PAPER = get_profile("paper")
CPU = torch.device("cpu")


class Named(nn.Module):
    """Parameters named like a model's: a backbone, a `head.` and a `net.` (param_lr prefixes)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.head = nn.Linear(2, 2)
        self.net = nn.Linear(2, 2)


def settings_of(model: str, dataset: str = "ava", variants: tuple[str, ...] = ()):
    config, _ = registry.resolve_config(model, "paper", dataset, variants)
    return train_settings(config, PAPER, CPU), config


def lrs_over(settings, epochs: int, updates_per_epoch: int = 1) -> list[float]:
    """The learning rate of the first group in each epoch (after the schedule's steps)."""
    optimizer = make_optimizer(Named(), settings)
    schedule = lr_schedule(optimizer, settings, settings.epochs * updates_per_epoch)
    seen = []
    for _ in range(epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        if schedule is None:
            continue
        for _ in range(updates_per_epoch if getattr(schedule, "per_update", False) else 1):
            optimizer.step()  # no gradients: the parameters stay; the schedule's order holds
            schedule.step()
    return seen


def transform_steps(settings, train: bool) -> list:
    return _file_transform(settings.img_size, settings.resize, train, settings.interpolation)


# (model, optimizer class, lr, batch, epochs, emd, drop_last, eval batch, resize, interpolation)
PAPER_RECIPES = [
    ("swinv2", torch.optim.Adam, 1e-5, 48, 20, "batch_rms", True, 96, 300, "bilinear"),
    ("maxvit", torch.optim.Adam, 1e-5, 48, 20, "batch_rms", True, 96, 256, "bilinear"),
    ("tanet", torch.optim.Adam, 3e-4, 48, 20, "batch_rms", False, 48, 224, "bicubic"),
    ("eat", torch.optim.Adam, 1e-6, 16, 20, "batch_rms", False, 16, 224, "bicubic"),
    ("nima", torch.optim.SGD, 3e-7, 128, 100, "per_sample", False, 256, 256, "bilinear"),
    ("hgcn", torch.optim.SGD, 1e-2, 100, 20, "per_sample", True, 200, 320, "bilinear"),
    ("musiq", torch.optim.SGD, 0.12, 512, 20, "per_sample", True, 1024, None, "bilinear"),
    ("biaa", torch.optim.Adam, 1e-4, 80, 50, "per_sample", True, 160, 256, "bilinear"),
]


@pytest.mark.parametrize("row", PAPER_RECIPES, ids=[row[0] for row in PAPER_RECIPES])
def test_the_paper_recipe_reaches_the_optimizer_the_batches_and_the_loss(row):
    model, optimizer_class, lr, batch, epochs, emd, drop_last, eval_batch, resize, filt = row
    settings, config = settings_of(model)
    optimizer = make_optimizer(Named(), settings)
    assert type(optimizer) is optimizer_class
    assert settings.lr == lr and optimizer.defaults["lr"] == lr
    assert (settings.batch_size, settings.epochs) == (batch, epochs)
    assert settings.emd == emd and settings.drop_last == drop_last
    assert settings.eval_batch == eval_batch
    if resize is not None:  # MUSIQ reads images at their own size (loading.py)
        assert settings.resize == resize
    assert settings.interpolation == filt
    assert set(config.get("recipe", {})) <= set(RECIPE_KEYS)


def test_parameter_groups_momentum_and_decay_reach_the_optimizer():
    nima, _ = settings_of("nima")
    groups = {len(group["params"]): group for group in make_optimizer(Named(), nima).param_groups}
    lrs = sorted(group["lr"] for group in groups.values())
    assert lrs == [3e-7, 3e-6]  # the base CNN and the last FC (`head.`)
    assert all(group["momentum"] == 0.9 for group in groups.values())
    hgcn, _ = settings_of("hgcn")
    (group,) = make_optimizer(Named(), hgcn).param_groups
    assert group["nesterov"] and group["weight_decay"] == 1e-4
    biaa, _ = settings_of("biaa")
    lrs = {group["lr"] for group in make_optimizer(Named(), biaa).param_groups}
    assert lrs == {1e-4, 1e-3}  # the ResNet, the MLP (`net.`)


def test_each_paper_schedule_by_hand():
    # EAT: x 0.1 every 5 epochs, from 1e-6.
    eat, _ = settings_of("eat")
    assert lrs_over(eat, 11) == pytest.approx([1e-6] * 5 + [1e-7] * 5 + [1e-8], rel=1e-9)
    # HGCN: 1e-2 for epochs 1-8, 1e-3 for 9-20 (one milestone).
    hgcn, _ = settings_of("hgcn")
    assert lrs_over(hgcn, 20) == pytest.approx([1e-2] * 8 + [1e-3] * 12, rel=1e-9)
    # NIMA: x 0.95 every 10 epochs.
    nima, _ = settings_of("nima")
    assert lrs_over(nima, 21)[::10] == pytest.approx([3e-7, 3e-7 * 0.95, 3e-7 * 0.95**2])
    # BIAA: the official exp_lr_scheduler compounds: lr_e = lr_0 0.9^(e (e + 1) / 2):
    # e = 0, 1, 2, 3 -> x1, x0.9, x0.729, x0.531441.
    biaa, _ = settings_of("biaa")
    assert lrs_over(biaa, 4) == pytest.approx([1e-4, 0.9e-4, 0.729e-4, 0.531441e-4])
    # TANet, Swin V2, MaxViT: constant.
    for model in ("tanet", "swinv2", "maxvit"):
        settings, _ = settings_of(model)
        assert set(lrs_over(settings, 20)) == {settings.lr}


def test_cosine_with_warm_up_steps_per_update():
    # 2 epochs of 4 updates, warm-up 0.5 epoch = 2 updates: lr 0.5, 1.0 (x 0.12), then
    # 0.5 (1 + cos(pi k / 6)) for k = 0..5.
    musiq, _ = settings_of("musiq")
    from dataclasses import replace

    settings = replace(musiq, epochs=2, warmup_epochs=0.5)
    optimizer = make_optimizer(Named(), settings)
    schedule = lr_schedule(optimizer, settings, updates=8)
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    cosine = [0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(6)]
    assert seen == pytest.approx([0.12 * f for f in (0.5, 1.0, *cosine)])


def test_musiq_recipe_is_cosine_without_a_known_warm_up():
    musiq, config = settings_of("musiq")
    assert musiq.schedule == "cosine" and musiq.warmup_epochs == 0
    assert config["recipe"]["official_batch_size"] == 512


def test_a_smaller_batch_needs_a_fit_and_each_fit_is_applied():
    config, _ = registry.resolve_config("musiq", "paper", "ava")
    small = {**config, "recipe": {**config["recipe"], "batch_size": 64}}
    with pytest.raises(UserError, match="batch_fit=accumulate"):
        train_settings(small, PAPER, CPU)
    accumulate = {**small, "recipe": {**small["recipe"], "batch_fit": "accumulate"}}
    settings = train_settings(accumulate, PAPER, CPU)
    assert (settings.accumulate, settings.lr) == (8, 0.12)  # 512 / 64 batches per update
    scale = {**small, "recipe": {**small["recipe"], "batch_fit": "scale_lr"}}
    settings = train_settings(scale, PAPER, CPU)
    assert (settings.accumulate, settings.lr) == (1, pytest.approx(0.12 * 64 / 512))
    odd = {**accumulate, "recipe": {**accumulate["recipe"], "batch_size": 100}}
    with pytest.raises(UserError, match="must divide"):
        train_settings(odd, PAPER, CPU)


@pytest.mark.parametrize("model, train_resize, interpolation", [
    ("tanet", 224, transforms.InterpolationMode.BICUBIC),  # PIL squash to 224, no crop
    ("eat", 224, transforms.InterpolationMode.BICUBIC),
    ("swinv2", 300, transforms.InterpolationMode.BILINEAR),  # Resize 300 -> crop 256
    ("hgcn", 320, transforms.InterpolationMode.BILINEAR),
])  # fmt: skip
def test_the_recipe_reaches_the_transforms(model, train_resize, interpolation):
    settings, config = settings_of(model)
    train = transform_steps(settings, train=True).transforms
    test = transform_steps(settings, train=False).transforms
    assert train[0].size == (train_resize, train_resize)
    assert train[0].interpolation == interpolation
    assert isinstance(train[1], transforms.RandomHorizontalFlip)
    assert train[2].size == (config["img_size"], config["img_size"])
    assert test[0].size == (config["img_size"], config["img_size"])
    assert test[0].interpolation == interpolation


def test_tad66k_has_the_official_tad66k_recipe_and_head():
    tanet, config = settings_of("tanet", "tad66k")
    assert config["head"] == "score"
    assert (tanet.batch_size, tanet.epochs, tanet.resize) == (40, 200, 256)
    assert tanet.interpolation == "bilinear" and tanet.eval_batch == 40
    eat, config = settings_of("eat", "tad66k")
    assert config["head"] == "score" and (eat.lr, eat.epochs) == (1e-5, 25)
    assert lrs_over(eat, 25) == [1e-5] * 25  # constant on TAD66K
    _, ava = settings_of("tanet", "ava")
    assert ava["head"] == "logits"


def test_the_loss_follows_the_recipe_form_and_the_head():
    # Two samples, two bins for the arithmetic: CDF gaps (0.5, 0) and (0, 0) per bin ->
    # per sample sqrt(mean d^2) = (sqrt(0.125), 0), mean 0.1768; batch RMS sqrt(0.25 / 4) = 0.25.
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    raw = probs  # a "distribution" head: no softmax
    assert batch_loss(raw, target, "per_sample", output="distribution").item() == pytest.approx(
        math.sqrt(0.125) / 2
    )
    assert batch_loss(raw, target, "batch_rms", output="distribution").item() == pytest.approx(0.25)
    # A score head (score / 10) against distribution labels: their mean scores 1.5 and 1.0 on
    # bins 1..2; outputs 0.2 and 0.1 -> squared errors (0.2 - 0.15)^2, (0.1 - 0.1)^2.
    score = torch.tensor([[0.2], [0.1]])
    expected = ((0.2 - 0.15) ** 2 + (0.1 - 0.1) ** 2) / 2
    assert batch_loss(score, probs, "batch_rms", output="score").item() == pytest.approx(expected)


def test_variants_are_named_overrides_recorded_only_when_they_change_something():
    config, applied = registry.resolve_config("tanet", "paper", "ava", ("per_image",))
    assert config["target_net"] == "per_image" and applied == ("per_image",)
    config, applied = registry.resolve_config("tanet", "cpu", "ava", ("per_image",))
    assert applied == ()  # the cpu profile's shared recipe is per image already
    config, applied = registry.resolve_config("biaa", "paper", "ava", ("reptile", "step_decay"))
    assert config["procedure"]["official_meta_update"] is False
    assert config["procedure"]["support"] == 80  # merged key by key
    assert config["recipe"]["schedule"] == "step" and config["recipe"]["lr"] == 1e-4
    with pytest.raises(UserError, match="no variant 'nope'"):
        registry.resolve_config("biaa", "paper", "ava", ("nope",))


def test_a_paper_run_refuses_to_start_without_its_pretrained_part(tmp_path):
    from bench.run.dag import RunRequest, stages_for
    from bench.train.methods import MethodOptions

    run = RunRequest("synth-ava", "tanet", "paper", 0, MethodOptions())
    with pytest.raises(UserError, match=r"tanet\.theme=FILE.*--variant tanet=harness_theme"):
        stages_for(run)
    theme = tmp_path / "places.pth.tar"
    theme.write_bytes(b"")
    given = stages_for(RunRequest(**{**vars(run), "weights": {"theme": str(theme)}}))
    assert [stage.kind for stage in given] == ["round1"]
    pretrained = stages_for(RunRequest(**{**vars(run), "variants": ("harness_theme",)}))
    assert [stage.kind for stage in pretrained] == ["pretrain", "round1"]
    assert pretrained[-1].config["variants"] == ["harness_theme"]
    with pytest.raises(UserError, match=r"nima\.backbone=FILE.*--variant nima=scratch"):
        stages_for(RunRequest("synth-ava", "nima", "paper", 0, MethodOptions()))
    scratch = stages_for(
        RunRequest("synth-ava", "nima", "paper", 0, MethodOptions(), variants=("scratch",))
    )
    assert scratch[-1].config["variants"] == ["scratch"]
