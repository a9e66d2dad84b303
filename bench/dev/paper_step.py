"""The `paper` profile's training step on an accelerator, against timm's bare model.

    python -m bench.dev.perf --device cuda          # Swin V2-B at 256 px, batch 48, bf16 autocast
    python -m bench.dev.perf --device cpu --tiny    # the same code on the smoke config (a test)

Two loops of the same optimizer steps, timed after a warm-up (the device synchronised around
each timed block):

- the harness: `bench.train.Supervised` exactly as a round runs it: JPEG files decoded and
  augmented by the DataLoader (the profile's workers, resize 300 and random crop 256), then
  `training_loss` with the full ELTA step (TFA + FLSA), bf16 autocast on CUDA, Adam;
- bare: the same model (timm's `swinv2_base_window8_256` and the 10-bin head) on one random
  batch already on the device: forward, EMD, backward, Adam, the same autocast; no data
  loading, no ELTA.

The ratio bare seconds / harness seconds per step is the share of the bare model's throughput
the harness keeps (goal >= 90 %). The JPEGs are written to a temporary folder first (random
noise at 400 x 300 px, a size like AVA's), so the data loading is real.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from baselines import create_model, model_config
from bench.data.types import Split
from bench.profiles import get_profile
from bench.run.stages import STAGE_THREADS
from bench.train.loop import Supervised, optimizer_step
from bench.train.methods import MethodOptions
from bench.train.settings import train_settings

ELTA_STEP = MethodOptions(tfa=True, flsa_weight=1.0)


def _jpegs(folder: Path, n: int, size: tuple[int, int]) -> Split:
    rng = np.random.default_rng(0)
    paths = []
    for k in range(n):
        paths.append(folder / f"{k}.jpg")
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(paths[-1], quality=90)
    dists = rng.dirichlet(np.ones(10), n).astype(np.float32)
    scores = (dists @ np.arange(1, 11)).astype(np.float32)
    return Split(paths, scores, dists, [str(p) for p in paths])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _per_step(run, steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return (time.perf_counter() - start) / steps


def measure(device: str, tiny: bool = False, repeats: int = 3) -> dict:
    """Seconds per step of the harness and of the bare model, and their ratio."""
    dev = torch.device(device)
    if dev.type == "cpu":
        torch.set_num_threads(STAGE_THREADS)  # as every stage runs on the CPU
    profile = get_profile("smoke" if tiny else "paper")
    config = model_config("swinv2", profile.name)
    settings = replace(train_settings(config, profile, dev, epochs=1), lr=1e-5)
    if tiny:
        settings = replace(settings, batch_size=4, num_workers=0, resize=40)
    steps = 4 if tiny else 20
    with tempfile.TemporaryDirectory() as folder:
        train = _jpegs(Path(folder), settings.batch_size * steps, (40, 30) if tiny else (400, 300))
        torch.manual_seed(0)
        model = create_model("swinv2", profile.name).to(dev)
        harness = Supervised(model, train, None, ELTA_STEP, settings, seed=0)
        harness.epoch(0)  # warm-up: one epoch of the same steps
        harness_s = [_per_step(lambda: harness.epoch(0), steps, dev) for _ in range(repeats)]

    torch.manual_seed(0)
    bare = create_model("swinv2", profile.name).to(dev)
    optimizer = torch.optim.Adam(bare.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(settings.batch_size, 3, settings.img_size, settings.img_size, generator=g)
    x = x.to(dev)
    targets = torch.softmax(torch.randn(settings.batch_size, 10, generator=g), -1).to(dev)

    plain = SimpleNamespace(  # the harness's own optimizer step, without ELTA or DIR terms
        model=bare, opts=MethodOptions(), settings=settings, optimizer=optimizer,
        step_generator=torch.Generator(), dir_terms=None, updates=0,
    )  # fmt: skip

    def bare_steps() -> None:
        for _ in range(steps):
            optimizer_step(plain, x, targets, 0, {})

    bare_steps()  # warm-up
    bare_s = [_per_step(bare_steps, steps, dev) for _ in range(repeats)]
    harness_step, bare_step = statistics.median(harness_s), statistics.median(bare_s)
    return {
        "device": str(dev),
        "config": f"{'smoke' if tiny else 'paper'} swinv2, batch {settings.batch_size}, "
        f"{settings.img_size} px, {settings.num_workers} loader workers, amp {settings.amp}",
        "harness_s": harness_step,
        "bare_s": bare_step,
        "share": bare_step / harness_step,
    }


def report(result: dict) -> str:
    return "\n".join(
        [
            f"5. The paper profile's step on {result['device']} ({result['config']}): the "
            "harness (JPEGs through the DataLoader, TFA + FLSA) against timm's bare model",
            f"   harness {1e3 * result['harness_s']:.1f} ms/step, bare "
            f"{1e3 * result['bare_s']:.1f} ms/step: the harness keeps "
            f"{100 * result['share']:.0f} % of the bare throughput (goal >= 90 %)",
        ]
    )
