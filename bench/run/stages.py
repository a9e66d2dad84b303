"""What each stage computes and stores (the stages and their ids: bench/run/dag.py).

pretrain   pre-train a model part on the dataset's group labels (bench/train/pretrain.py)
round1     train the model (with TFA / FLSA if asked); evaluate the best-on-validation
           checkpoint on the test set
selftrain  APDS: grid search (beta, t) on a labelled subset of the validation split (eq. 9),
           pseudo-label the unlabeled pool with them (eq. 8), one self-training round from
           the round-1 weights (eq. 10), evaluate on the test set
evaluate   build the model from trained weights and evaluate it on validation and test

A stage's config (the dict its id hashes) is parsed into a `RunConfig` where it enters; the
training settings come from bench/train/settings.py.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Queue

import numpy as np
import pandas as pd
import timm
import torch

from baselines import create_model
from baselines.registry import create_part, procedure_class
from bench.data.registry import load_dataset
from bench.data.types import IAADataset
from bench.profiles import Profile
from bench.run.dag import Context, Stage
from bench.run.lifeline import exit_with
from bench.run.store import Store, code_version, damage_found, write_json
from bench.train.loop import (
    Progress,
    Round,
    Supervised,
    output_of,
    predict_outputs,
    train_round,
)
from bench.train.losses import predicted_scores
from bench.train.methods import MethodOptions
from bench.train.metrics import evaluate
from bench.train.pretrain import pretrain_part
from bench.train.settings import TrainSettings, train_settings
from elta import apds

# One CPU thread per stage: CPU results then do not depend on how many stages run at once
# (floating-point sums are ordered by the thread count); parallelism comes from --jobs.
STAGE_THREADS = 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


@dataclass(frozen=True)
class RunConfig:
    """The config of a pretrain, round1 or evaluate stage (a selftrain stage holds its round
    1's), parsed: the profile as it was hashed into the stage id, not looked up by name."""

    dataset: str
    data_root: Path | None
    unlabeled: Path | None
    model: str
    model_config: Mapping
    profile: Profile
    weights: Mapping[str, str]
    seed: int
    method: MethodOptions

    @classmethod
    def parse(cls, config: Mapping) -> RunConfig:
        return cls(
            dataset=config["dataset"],
            data_root=Path(config["data_root"]) if config["data_root"] else None,
            unlabeled=Path(config["unlabeled"]) if config.get("unlabeled") else None,
            model=config["model"],
            model_config=config["model_config"],
            profile=Profile.from_dict(config["profile"]),
            weights=config.get("weights") or {},
            seed=config.get("seed", 0),
            method=MethodOptions(**config.get("method", {})),
        )

    def settings(self, device: torch.device, model=None, epochs: int | None = None):
        """The round's training settings; `model` gives the per-image inputs it needs."""
        needs = tuple(getattr(model, "needs", ()))
        return train_settings(self.model_config, self.profile, device, epochs=epochs, needs=needs)

    def load(self, ctx: Context, out: Path) -> IAADataset:
        """The stage's dataset; its content fingerprint goes to the stage's data.json."""
        dataset = load_dataset(
            self.dataset, self.profile, self.data_root, ctx.cache_dir, self.unlabeled
        )
        write_json(out / "data.json", {"dataset": dataset.name, "fingerprint": dataset.fingerprint})
        return dataset

    def training_round(
        self, dataset: IAADataset, settings: TrainSettings, seed: int, pseudo=None
    ) -> Round:
        """A training round with the model's own procedure (BIAA's meta-learning) if it has
        one."""
        return Round(
            train=dataset.train,
            val=dataset.val,
            opts=self.method,
            settings=settings,
            seed=seed,
            pseudo=pseudo,
            procedure=procedure_class(self.model) or Supervised,
            procedure_config=self.model_config.get("procedure", {}),
        )


def _model(config: RunConfig, store: Store, stage: Stage):
    """The run's model, from its seed, its weight files and a pre-trained part's stage."""
    weights = dict(config.weights)
    if stage.parent is not None and stage.parent.kind == "pretrain":
        part = config.model_config["pretrain"]["part"]
        weights[part] = store.path(stage.parent.id) / f"{part}.pt"
    torch.manual_seed(config.seed)
    model = create_model(
        config.model, config.profile.models, weights or None, dict(config.model_config)
    )
    if config.profile.cumulative_bn:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = None
    return model


def _evaluate_and_store(model, dataset: IAADataset, settings, out: Path, metrics: dict):
    """Test metrics and per-image predictions: the score and the head's outputs (`logit1..10`
    of a logits head, `output1..K` of a distribution or score head)."""
    outputs = predict_outputs(model, dataset.test, settings)
    pred = predicted_scores(outputs, output_of(model))
    test_metrics = evaluate(pred, dataset.test.scores)
    table = pd.DataFrame({"id": dataset.test.ids, "gt": dataset.test.scores, "pred": pred})
    column = "logit" if output_of(model) == "logits" else "output"
    for k in range(outputs.shape[1]):
        table[f"{column}{k + 1}"] = outputs[:, k]
    table.to_csv(out / "predictions.csv", index=False)
    write_json(out / "metrics.json", {"test": test_metrics, **metrics})
    return test_metrics


def _train_and_store(
    model, dataset: IAADataset, training: Round, out: Path, progress: Progress, extra: dict
) -> dict:
    """Train a round, keep the best-on-validation weights, store them and their test results
    (with `extra` entries added to metrics.json)."""
    result = train_round(model, training, progress)
    result.curve.to_csv(out / "curve.csv", index=False)
    model.load_state_dict(result.state)
    torch.save(result.state, out / "model.pt")
    val = result.curve.loc[result.curve.epoch == result.best_epoch].iloc[0].to_dict()
    test = _evaluate_and_store(model, dataset, training.settings, out, {"val": val, **extra})
    progress.log(f"best epoch {result.best_epoch}: test {json.dumps(test)}")
    return test


def _pretrain(stage: Stage, out: Path, ctx: Context, progress: Progress) -> None:
    config = RunConfig.parse(stage.config)
    spec = config.model_config["pretrain"]
    settings = config.settings(resolve_device(ctx.device), epochs=spec["epochs"])
    settings = replace(settings, batch_size=config.profile.batch_size, lr=config.profile.lr)
    torch.manual_seed(0)
    network = create_part(config.model, spec["part"], dict(config.model_config))
    dataset = config.load(ctx, out)
    state, curve = pretrain_part(network, dataset.train, dataset.val, settings, 0, progress)
    curve.to_csv(out / "curve.csv", index=False)
    torch.save(state, out / f"{spec['part']}.pt")
    best = curve.loc[curve.val_accuracy.idxmax()]
    write_json(out / "metrics.json", {"val": {"accuracy": best.val_accuracy}, "epoch": best.epoch})
    progress.log(
        f"{spec['part']}: best validation accuracy {best.val_accuracy:.4f} (epoch {best.epoch})"
    )


def _round1(stage: Stage, store: Store, out: Path, ctx: Context, progress: Progress) -> None:
    config = RunConfig.parse(stage.config)
    model = _model(config, store, stage)
    settings = config.settings(resolve_device(ctx.device), model)
    dataset = config.load(ctx, out)
    training = config.training_round(dataset, settings, config.seed)
    _train_and_store(model, dataset, training, out, progress, {})


def _evaluate(stage: Stage, out: Path, ctx: Context, progress: Progress) -> None:
    """Trained weights evaluated on test as their code does: in float32 (no autocast, no TF32,
    as every official code), in the recipe's evaluation batches, in order. (Nothing is chosen
    here, so the validation split is not evaluated.)"""
    config = RunConfig.parse(stage.config)
    model = create_model(
        config.model, config.profile.models, dict(config.weights), dict(config.model_config)
    )
    settings = replace(config.settings(resolve_device(ctx.device), model, epochs=0), amp=False)
    model.to(settings.device)
    dataset = config.load(ctx, out)
    with _float32():
        test = _evaluate_and_store(model, dataset, settings, out, {"val": {}})
    progress.log(f"evaluated {json.dumps(dict(config.weights))}: test {json.dumps(test)}")


@contextmanager
def _float32():
    """Plain float32 matrix products and convolutions on a GPU (TF32 off), then as before."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def _pseudo_label(
    model, dataset: IAADataset, settings: TrainSettings, profile: Profile, seed: int, out: Path, log
):
    """APDS: choose (beta, t) on a labelled validation subset, then label the pool."""
    if dataset.unlabeled is None or not len(dataset.unlabeled):
        raise ValueError(f"APDS needs an unlabeled pool; dataset '{dataset.name}' has none")
    if output_of(model) != "logits":
        raise ValueError(f"APDS sharpens a softmax: the model's head returns a {output_of(model)}")
    rng = np.random.default_rng(seed)
    n_search = max(1, round(profile.apds_val_fraction * len(dataset.val)))
    search = dataset.val.subset(np.sort(rng.permutation(len(dataset.val))[:n_search]))
    logits = torch.from_numpy(predict_outputs(model, search, settings))
    pred = torch.from_numpy(predicted_scores(logits.numpy()))
    result = apds.grid_search(
        logits,
        pred,
        torch.from_numpy(search.scores).to(pred.dtype),
        list(profile.apds_betas),
        list(profile.apds_thresholds),
        profile.apds_min_selected,
    )
    result.grid.to_csv(out / "apds_grid.csv", index=False)
    log(
        f"APDS search on {n_search} val images: beta*={result.beta} t*={result.threshold} "
        f"MAE {result.mae:.4f} over {result.count}"
    )

    pool = dataset.unlabeled
    logits = torch.from_numpy(predict_outputs(model, pool, settings))
    probs = torch.softmax(logits, -1)
    pred = apds.expected_score(probs)
    confidence = apds.sharpen(logits, pred, result.beta).amax(-1)
    keep = (confidence >= result.threshold).numpy()
    keep_idx = np.flatnonzero(keep)[: len(dataset.train)]  # no more than the training set
    labelled = pool.subset(keep_idx)
    labelled.scores = pred.numpy()[keep_idx].astype(np.float32)
    # The pseudo-labels are the unsharpened predictions, as in the official code.
    labelled.dists = probs.numpy()[keep_idx] if dataset.label_kind == "dist" else None
    pd.DataFrame(
        {
            "id": labelled.ids,
            "pseudo_score": labelled.scores,
            "confidence": confidence.numpy()[keep_idx],
        }
    ).to_csv(out / "pseudo_labels.csv", index=False)
    log(f"pseudo-labelled {len(labelled)} of {len(pool)} pool images")
    summary = {
        "beta": result.beta,
        "threshold": result.threshold,
        "search_mae": result.mae,
        "search_count": result.count,
        "n_search": n_search,
        "n_pseudo": len(labelled),
    }
    return labelled, summary


def _selftrain(stage: Stage, store: Store, out: Path, ctx: Context, progress: Progress) -> None:
    config = RunConfig.parse(stage.config["parent"])
    dataset = config.load(ctx, out)
    model = _model(config, store, stage.parent)
    model.load_state_dict(torch.load(store.path(stage.parent.id) / "model.pt", map_location="cpu"))
    settings = config.settings(resolve_device(ctx.device), model, config.profile.st_epochs)
    model.to(settings.device)
    pseudo, summary = _pseudo_label(
        model, dataset, settings, config.profile, config.seed, out, progress.log
    )
    training = config.training_round(dataset, settings, config.seed + 1, pseudo)
    _train_and_store(model, dataset, training, out, progress, {"apds": summary})


def run_stage(
    stage: Stage,
    ctx: Context,
    progress: Queue | None = None,
    force: bool = False,
    run_by: str = "",
) -> dict:
    """Compute one stage in this process and store it atomically, as ok or failed, holding the
    stage's lock (bench/run/store.py): a stage another process is computing is waited for and
    its result reused (the outcome's `reused` names who computed it), as is one stored
    meanwhile, unless `force`. A failure (NaN loss, an exception) is recorded with its reason,
    never raised. Each finished epoch is reported on the `progress` queue, if given (the runner
    draws it), and so is a wait, as a line of text. `run_by` (the runner) goes to the log; the
    outcome's `damage` is what this process found damaged in the store."""
    torch.set_num_threads(STAGE_THREADS)
    if ctx.runner_pid is not None:
        exit_with(ctx.runner_pid)  # a worker does not outlive its runner
    store = Store(ctx.results)

    def say(line: str) -> None:
        if progress is None:
            print(line, file=sys.stderr)
            return
        try:
            progress.put(line)
        except (OSError, EOFError):  # the runner's progress bars are gone: not a failure
            pass

    with store.claim(stage.id, force, say) as claim:
        if claim.reuse is not None:
            return {"id": stage.id, **claim.reuse, "damage": damage_found()}
        out = store.begin(stage.id)
        write_json(out / "config.json", stage.config)
        write_json(
            out / "versions.json",
            {
                "code": code_version(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "timm": timm.__version__,
                "numpy": np.__version__,
                "device": ctx.device,
                "host": platform.node(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            },
        )
        start = time.time()
        with open(out / "log.txt", "a", buffering=1) as log_file:

            def log(line: str) -> None:
                log_file.write(f"{time.strftime('%H:%M:%S')} {line}\n")

            def on_epoch(epoch: int, epochs: int, loss: float, srcc: float) -> None:
                if progress is None:
                    return
                try:
                    progress.put((stage.id, stage.kind, epoch, epochs, loss, srcc))
                except (OSError, EOFError):  # the runner's progress bars are gone
                    pass

            report = Progress(log, on_epoch)
            by = f" for the run {run_by}" if run_by else ""
            log(f"{stage.kind} {stage.id} computed by {platform.node()}:{os.getpid()}{by}")
            try:
                if stage.kind == "pretrain":
                    _pretrain(stage, out, ctx, report)
                elif stage.kind == "round1":
                    _round1(stage, store, out, ctx, report)
                elif stage.kind == "selftrain":
                    _selftrain(stage, store, out, ctx, report)
                else:
                    _evaluate(stage, out, ctx, report)
                status = {"status": "ok", "reason": ""}
            except Exception as err:  # recorded, so that the other runs still finish
                status = {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
                log(f"FAILED {status['reason']}")
        status["seconds"] = round(time.time() - start, 2)
        write_json(out / "status.json", status)
        store.commit(out, stage.id)
    return {"id": stage.id, **status, "damage": damage_found()}
