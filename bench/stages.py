"""What each stage computes and stores (the stages and their ids: bench/plan.py).

round1     train the model (with TFA / FLSA if asked); evaluate the best-on-validation
           checkpoint on the test set
selftrain  APDS: grid search (beta, t) on a labelled subset of the validation split (eq. 9),
           pseudo-label the unlabeled pool with them (eq. 8), one self-training round from
           the round-1 weights (eq. 10), evaluate on the test set
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from queue import Queue

import numpy as np
import pandas as pd
import timm
import torch

from baselines import create_model
from bench.data.registry import load_dataset
from bench.data.types import IAADataset
from bench.methods import MethodOptions
from bench.metrics import evaluate
from bench.plan import Context, Stage
from bench.profiles import Profile, get_profile
from bench.store import Store, code_version, write_json
from bench.train import TrainSettings, predict_logits, predicted_scores, train_round
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


def _settings(config: dict, profile: Profile, epochs: int, device: torch.device) -> TrainSettings:
    return TrainSettings(
        epochs=epochs,
        batch_size=profile.batch_size,
        lr=profile.lr,
        img_size=config["model_config"]["img_size"],
        resize=profile.resize,
        num_workers=profile.num_workers,
        device=device,
    )


def _load(config: dict, profile: Profile, ctx: Context) -> IAADataset:
    root = Path(config["data_root"]) if config["data_root"] else None
    return load_dataset(config["dataset"], profile, root, ctx.cache_dir)


def _model(config: dict):
    weights = Path(config["weights"]) if config["weights"] else None
    torch.manual_seed(config["seed"])
    return create_model(config["model"], config["profile"]["name"], weights)


def _evaluate_and_store(model, dataset: IAADataset, settings, out: Path, metrics: dict):
    logits = predict_logits(model, dataset.test, settings)
    pred = predicted_scores(logits)
    test_metrics = evaluate(pred, dataset.test.scores)
    table = pd.DataFrame({"id": dataset.test.ids, "gt": dataset.test.scores, "pred": pred})
    for k in range(logits.shape[1]):
        table[f"logit{k + 1}"] = logits[:, k]
    table.to_csv(out / "predictions.csv", index=False)
    write_json(out / "metrics.json", {"test": test_metrics, **metrics})
    return test_metrics


def _train_and_store(
    model, dataset, opts, settings, seed, out, log, on_epoch, pseudo=None, extra=None
) -> dict:
    """Train a round, keep the best-on-validation weights, store them and their test results
    (with `extra` entries added to metrics.json)."""
    result = train_round(
        model, dataset.train, dataset.val, opts, settings, seed, log, pseudo, on_epoch
    )
    result.curve.to_csv(out / "curve.csv", index=False)
    model.load_state_dict(result.state)
    torch.save(result.state, out / "model.pt")
    val = result.curve.loc[result.curve.epoch == result.best_epoch].iloc[0].to_dict()
    test = _evaluate_and_store(model, dataset, settings, out, {"val": val, **(extra or {})})
    log(f"best epoch {result.best_epoch}: test {json.dumps(test)}")
    return test


def _round1(stage: Stage, out: Path, ctx: Context, log, on_epoch) -> None:
    config = stage.config
    profile = get_profile(config["profile"]["name"])
    settings = _settings(config, profile, profile.epochs, resolve_device(ctx.device))
    opts = MethodOptions(**config["method"])
    model = _model(config)
    _train_and_store(
        model, _load(config, profile, ctx), opts, settings, config["seed"], out, log, on_epoch
    )


def _pseudo_label(
    model, dataset: IAADataset, settings, profile: Profile, seed: int, out: Path, log
):
    """APDS: choose (beta, t) on a labelled validation subset, then label the pool."""
    if dataset.unlabeled is None or not len(dataset.unlabeled):
        raise ValueError(f"APDS needs an unlabeled pool; dataset '{dataset.name}' has none")
    rng = np.random.default_rng(seed)
    n_search = max(1, round(profile.apds_val_fraction * len(dataset.val)))
    search = dataset.val.subset(np.sort(rng.permutation(len(dataset.val))[:n_search]))
    logits = torch.from_numpy(predict_logits(model, search, settings))
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
    logits = torch.from_numpy(predict_logits(model, pool, settings))
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


def _selftrain(stage: Stage, store: Store, out: Path, ctx: Context, log, on_epoch) -> None:
    config = stage.config["parent"]
    profile = get_profile(config["profile"]["name"])
    device = resolve_device(ctx.device)
    dataset = _load(config, profile, ctx)
    model = _model(config)
    model.load_state_dict(torch.load(store.path(stage.parent.id) / "model.pt", map_location="cpu"))
    settings = _settings(config, profile, profile.st_epochs, device)
    model.to(device)
    pseudo, summary = _pseudo_label(model, dataset, settings, profile, config["seed"], out, log)
    opts = MethodOptions(**config["method"])
    _train_and_store(
        model,
        dataset,
        opts,
        settings,
        config["seed"] + 1,
        out,
        log,
        on_epoch,
        pseudo,
        {"apds": summary},
    )


def run_stage(stage: Stage, ctx: Context, progress: Queue | None = None) -> dict:
    """Compute one stage in this process and store it atomically, as ok or failed.
    A failure (NaN loss, an exception) is recorded with its reason, never raised.
    Each finished epoch is reported on the `progress` queue, if given (the runner draws it)."""
    torch.set_num_threads(STAGE_THREADS)
    store = Store(ctx.results)
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
        },
    )
    start = time.time()
    with open(out / "log.txt", "a", buffering=1) as log_file:

        def log(line: str) -> None:
            log_file.write(f"{time.strftime('%H:%M:%S')} {line}\n")

        def on_epoch(epoch: int, epochs: int, loss: float, srcc: float) -> None:
            if progress is not None:
                progress.put((stage.id, stage.kind, epoch, epochs, loss, srcc))

        log(f"{stage.kind} {stage.id}")
        try:
            if stage.kind == "round1":
                _round1(stage, out, ctx, log, on_epoch)
            else:
                _selftrain(stage, store, out, ctx, log, on_epoch)
            status = {"status": "ok", "reason": ""}
        except Exception as err:  # recorded, so that the other runs still finish
            status = {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
            log(f"FAILED {status['reason']}")
    status["seconds"] = round(time.time() - start, 2)
    write_json(out / "status.json", status)
    store.commit(out, stage.id)
    return {"id": stage.id, **status}
