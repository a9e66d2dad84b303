"""Speed of every registered model, measured side by side in one run on one CPU thread.

    python -m bench.dev.model_perf            # every model: cpu throughput, paper batch time
    python -m bench.dev.model_perf --quick    # fewer timed steps, no paper-size models

Two measurements per model, each the median over timed repetitions after a warm-up:

1. Training throughput at the `cpu` profile: one full step (bench.train.training_loss with
   TFA + FLSA as in ELTA's rows, zero_grad, backward, Adam step) on a batch of 32 random images
   at the model's cpu `img_size`, with the per-image inputs it needs; reported as images per
   second on one core, and as the minutes a cpu training round would take at that rate
   (2,400 images x 8 epochs; validation passes not included).
2. At the `paper` profile, the forward + backward time of a batch of 8 at the paper size
   (MUSIQ: 8 images of 500 x 375 px, an AVA-like size, at their native resolution), and the
   seconds per image. A paper-size model on a CPU is only a reference point: the paper profile
   is for GPUs.

Random weights and inputs (speed does not depend on them); seeded.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from baselines import create_model, list_models, model_config
from bench.profiles import get_profile
from bench.run.stages import STAGE_THREADS
from bench.train.loop import training_loss
from bench.train.methods import MethodOptions

CPU_BATCH = 32
PAPER_BATCH = 8
MUSIQ_NATIVE = (375, 500)  # height, width of an AVA-like landscape image
ELTA_STEP = MethodOptions(tfa=True, flsa_weight=1.0)


def _inputs(model, batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    x = torch.randn(batch, 3, *size)
    extras = {
        "aspect": torch.full((batch,), size[1] / size[0]),
        "size": torch.tensor(size).expand(batch, 2).clone(),
    }
    return x, {name: extras[name] for name in model.needs}


def _median_seconds(step, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_throughput(name: str, repeats: int) -> dict:
    """Images per second of one training step at the cpu profile (see the module docstring)."""
    torch.manual_seed(0)
    model = create_model(name, "cpu").train()
    size = model_config(name, "cpu")["img_size"]
    x, extras = _inputs(model, CPU_BATCH, (size, size))
    targets = torch.softmax(torch.randn(CPU_BATCH, 10), -1)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = training_loss(model, x, targets, 0, ELTA_STEP, generator, extras)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = _median_seconds(step, warmup=2, repeats=repeats)
    profile = get_profile("cpu")
    steps = profile.synth_sizes.n_train // profile.batch_size * profile.epochs
    return {
        "model": name,
        "params_cpu": sum(p.numel() for p in model.parameters()),
        "img_size": size,
        "step_s": seconds,
        "images_per_s": CPU_BATCH / seconds,
        "round_min": steps * seconds / 60,
    }


def paper_batch(name: str, repeats: int) -> dict:
    """Forward + backward seconds of a paper-size batch on the CPU."""
    torch.manual_seed(0)
    model = create_model(name, "paper").train()
    size = model_config(name, "paper")["img_size"]
    shape = MUSIQ_NATIVE if "size" in model.needs else (size, size)
    x, extras = _inputs(model, PAPER_BATCH, shape)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x, **extras).logsumexp(-1).mean().backward()

    seconds = _median_seconds(step, warmup=1, repeats=repeats)
    return {
        "model": name,
        "params_paper": sum(p.numel() for p in model.parameters()),
        "input": f"{shape[0]}x{shape[1]}",
        "batch_s": seconds,
        "s_per_image": seconds / PAPER_BATCH,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dev.model_perf", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps, no paper-size models")
    parser.add_argument("--models", help="comma-separated subset (default: every model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(STAGE_THREADS)
    names = args.models.split(",") if args.models else sorted(list_models())
    print(f"cpu profile: training step (TFA + FLSA, Adam) on a batch of {CPU_BATCH}, one thread")
    print("| model | img px | params | step s | images/s | round min (2,400 x 8, no val) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        r = cpu_throughput(name, repeats=5 if args.quick else 15)
        print(
            f"| {name} | {r['img_size']} | {r['params_cpu']:,} | {r['step_s']:.3f} | "
            f"{r['images_per_s']:.0f} | {r['round_min']:.1f} |"
        )
    if args.quick:
        return 0
    print(f"\npaper profile: forward + backward of a batch of {PAPER_BATCH} on the CPU, one thread")
    print("| model | input px | params | batch s | s / image |")
    print("|---|---|---|---|---|")
    for name in names:
        r = paper_batch(name, repeats=3)
        print(
            f"| {name} | {r['input']} | {r['params_paper']:,} | {r['batch_s']:.2f} | "
            f"{r['s_per_image']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
