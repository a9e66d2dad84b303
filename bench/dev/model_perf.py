"""Training throughput of every registered model at a profile on a device, recorded as the
rates the dry run's estimate reads (bench/run/estimate.py).

    python -m bench.dev.model_perf                    # every model at cpu, one CPU thread
    python -m bench.dev.model_perf --profile paper --device cuda [--models nima,musiq]
    python -m bench.dev.model_perf --quick            # fewer steps, nothing recorded

Rules:

- The step is a round's (bench.train.loop.optimizer_step): `training_loss` with TFA + FLSA as
  in ELTA's rows, backward, the recipe's optimizer; bf16 autocast on a GPU unless the recipe says
  amp = false. The batch is the round's (the recipe's batch size, else the profile's; `--batch`
  for one that fits the device), of random images already on the device at the model's size at
  the profile (MUSIQ at `paper`: 375 x 500 px, an AVA-like image at its native size), with the
  per-image inputs the model needs. No data loading, no evaluation, no start-up: a stage takes
  longer than its work at this rate, and rates of stored stages win over these (estimate.py).
- On the CPU one thread, as a stage runs. Random weights (speed does not depend on them), seeded.
- Seconds per step: the median of `--steps` timed steps after two untimed ones, the device
  synchronised around each. Images per second: the batch over it.
- Each model's rate is recorded as it is measured, in the results store's rates file
  (`--results`, default results/: rates.json): model, profile, device kind (cpu,
  cuda:<GPU name>), images per second, batch, image size, steps, when (UTC), code version, host.
  `--quick` is a glance: nothing is recorded.

Without --quick and at the cpu profile on the CPU, a second table follows: the forward +
backward time of a batch of 8 at the `paper` size on the CPU, as a reference point (the paper
profile is for GPUs).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import torch

from baselines import create_model, list_models, model_config
from bench.profiles import get_profile
from bench.run.estimate import RATES, device_kind, record_rates
from bench.run.stages import STAGE_THREADS
from bench.run.store import code_version
from bench.train.loop import make_optimizer, optimizer_step
from bench.train.methods import MethodOptions
from bench.train.settings import train_settings
from iaa_common import UserError

PAPER_BATCH = 8
MUSIQ_NATIVE = (375, 500)  # height, width of an AVA-like landscape image
ELTA_STEP = MethodOptions(tfa=True, flsa_weight=1.0)


def _inputs(model, batch: int, size: tuple[int, int], device: torch.device):
    x = torch.randn(batch, 3, *size).to(device)
    extras = {
        "aspect": torch.full((batch,), size[1] / size[0]),
        "size": torch.tensor(size).expand(batch, 2).clone(),
    }
    return x, {name: extras[name].to(device) for name in model.needs}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(step, device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(name: str, profile: str, device: str, steps: int, batch: int | None = None) -> dict:
    """Training images per second of one step of `name` at `profile` on `device` (rules in the
    module docstring), and what it was measured with, as a rates-file record."""
    where = torch.device(device)
    torch.manual_seed(0)
    model = create_model(name, profile).train().to(where)
    config = model_config(name, profile)
    settings = train_settings(config, get_profile(profile), where, needs=tuple(model.needs))
    batch = batch or settings.batch_size
    native = profile == "paper" and "size" in model.needs
    shape = MUSIQ_NATIVE if native else (settings.img_size, settings.img_size)
    x, extras = _inputs(model, batch, shape, where)
    targets = torch.softmax(torch.randn(batch, 10), -1).to(where)
    trainer = SimpleNamespace(  # what optimizer_step reads of a procedure
        model=model, opts=ELTA_STEP, settings=settings, optimizer=make_optimizer(model, settings),
        step_generator=torch.Generator(device=where).manual_seed(0), dir_terms=None, updates=0,
    )  # fmt: skip
    try:
        seconds = _median_seconds(
            lambda: optimizer_step(trainer, x, targets, 0, extras), where, 2, steps
        )
    except torch.OutOfMemoryError:
        raise UserError(
            f"{name} at {profile}: out of memory on {device} at batch {batch}; give --batch"
        ) from None
    return {
        "model": name,
        "profile": profile,
        "device": device_kind(device),
        "images_per_s": round(batch / seconds, 3),
        "batch": batch,
        "img": f"{shape[0]}x{shape[1]}",
        "params": sum(p.numel() for p in model.parameters()),
        "step_s": round(seconds, 5),
        "steps": steps,
        "amp": settings.autocast,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "host": platform.node(),
    }


def paper_batch(name: str, repeats: int) -> dict:
    """Forward + backward seconds of a paper-size batch on the CPU."""
    torch.manual_seed(0)
    model = create_model(name, "paper").train()
    size = model_config(name, "paper")["img_size"]
    shape = MUSIQ_NATIVE if "size" in model.needs else (size, size)
    x, extras = _inputs(model, PAPER_BATCH, shape, torch.device("cpu"))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x, **extras).logsumexp(-1).mean().backward()

    seconds = _median_seconds(step, torch.device("cpu"), warmup=1, repeats=repeats)
    return {
        "model": name,
        "params_paper": sum(p.numel() for p in model.parameters()),
        "input": f"{shape[0]}x{shape[1]}",
        "batch_s": seconds,
        "s_per_image": seconds / PAPER_BATCH,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dev.model_perf",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", help="comma-separated subset (default: every model)")
    parser.add_argument("--profile", default="cpu", help="smoke | cpu (default) | paper")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    parser.add_argument("--steps", type=int, help="timed steps per model (15; --quick 5)")
    parser.add_argument("--batch", type=int, help="images per step (default: the round's)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results store")
    parser.add_argument("--quick", action="store_true", help="5 steps, no paper-size table, "
                        "nothing recorded")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        return _measure(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _measure(args: argparse.Namespace) -> int:
    get_profile(args.profile)  # UserError for an unknown profile
    steps = args.steps or (5 if args.quick else 15)
    if steps < 1 or (args.batch is not None and args.batch < 1):
        raise UserError("--steps and --batch must be >= 1")
    try:
        kind = device_kind(args.device)
    except RuntimeError as err:
        raise UserError(f"--device {args.device}: not a device ({err})") from None
    if kind == "cpu":
        torch.set_num_threads(STAGE_THREADS)
    names = args.models.split(",") if args.models else sorted(list_models())
    unknown = [name for name in names if name not in list_models()]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(list_models())}")
    if kind == "cuda":
        raise UserError(f"--device {args.device}: no CUDA device here")
    print(f"{args.profile} profile on {kind}: a training step (TFA + FLSA, the recipe's optimizer)")
    print("| model | img px | params | step s | images/s | batch |")
    print("|---|---|---|---|---|---|")
    for name in names:
        r = throughput(name, args.profile, args.device, steps, args.batch)
        print(
            f"| {name} | {r['img']} | {r['params']:,} | {r['step_s']:.3f} | "
            f"{r['images_per_s']:.2f} | {r['batch']} |"
        )
        if not args.quick:
            record_rates(args.results, [r])
    if not args.quick:
        print(f"recorded in {args.results / RATES}")
    if args.quick or args.profile != "cpu" or kind != "cpu":
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
