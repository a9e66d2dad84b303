"""Score a folder of new images with a trained model: `run_all.py --score DIR --out FILE.csv`.

The model is a stored stage (`--stage ID`: a round1 or selftrain stage's model.pt, or the files
an evaluate stage evaluated, built from the config stored with the stage) or weight files
(`--weights MODEL=FILE`: a released model, or `MODEL.model=FILE`, a model.pt of this harness,
built from the model's config at `--profile`, `--dataset`, `--variant` and `--recipe`).

Every file under DIR whose name PIL can open as an image (.jpg, .png, ...) is decoded first;
one that fails is named on one line, skipped and counted, and the run goes on. The readable
ones are scored as a stage evaluates: the model's evaluation transform and batches, float32, no
autocast. The CSV has one row per image: `file` (relative to DIR), `score` (the 10-point
scale) and `bin1..bin10`, the predicted distribution over the ratings 1..10 (the softmax of a
logits head; a `distribution` head's raw outputs, which need not sum to 1, as its official code
reads them; empty for a head that gives one score).

A score depends on its image alone, not on the other images of its batch. Two official forms
couple a batch (DEVIATIONS.md): TANet's theme branch (`target_net = "batch"`) and EAT's batch
mean of interest points (`interest_points = "batch_mean"`), both the `paper` default. Such a
model is refused with a one-line error naming the variant that scores each image alone.
"""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from baselines import create_model, model_entry
from baselines.registry import resolve_config
from bench.data.registry import paper_dataset
from bench.data.types import Split
from bench.profiles import Profile, get_profile
from bench.run.grid import Request
from bench.run.pipeline import Execution
from bench.run.runner import check_settings
from bench.run.stages import RunConfig, _float32, resolve_device
from bench.run.store import Store, read_json
from bench.train.loop import evaluation_batches, output_of
from bench.train.losses import distribution, predicted_scores
from bench.train.settings import TrainSettings, train_settings
from iaa_common import NUM_BINS, UserError

# Config keys whose value couples the images of a batch (module docstring)
BATCH_COUPLED = {"target_net": "batch", "interest_points": "batch_mean"}
STAGE_ID = re.compile(r"[0-9a-f]{16}")
HEAD_NOTES = {  # what the CSV's bins are for a head other than logits
    "score": "gives one score: bin1..bin10 are left empty",
    "distribution": "is read as the distribution raw (not normalised), as its official code does",
}


@dataclass(frozen=True)
class Scorer:
    """A trained model ready to score, its evaluation settings, and where it came from."""

    name: str
    model: torch.nn.Module
    settings: TrainSettings
    source: str


def image_files(folder: Path) -> tuple[list[Path], int]:
    """The files under `folder` (sorted, subfolders included) whose suffix PIL opens as an
    image, and how many other files there are."""
    if not folder.is_dir():
        raise UserError(f"{folder}: --score folder not found")
    suffixes = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    images = [path for path in files if path.suffix.lower() in suffixes]
    return images, len(files) - len(images)


def _aspect_or_problem(path: Path) -> float | str:
    """Width / height of an image that decodes to its end as RGB, or why it does not. A JPEG is
    decoded at a reduced scale (`draft`): every byte is still read, so a cut-short file fails."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            image.draft("RGB", (1, 1))
            image.convert("RGB")
            return width / height
    except Exception as err:  # whatever PIL raises, the file cannot be scored
        return f"{type(err).__name__}: {err}"


def readable(images: list[Path]) -> tuple[list[Path], np.ndarray, list[tuple[Path, str]]]:
    """The images that decode, their aspect ratios (width / height), and the others with their
    problem."""
    with ThreadPoolExecutor() as pool:
        checks = pool.map(_aspect_or_problem, images)
        checks = list(tqdm(checks, total=len(images), desc="reading", unit="img"))
    good = [(path, c) for path, c in zip(images, checks, strict=True) if isinstance(c, float)]
    bad = [(path, c) for path, c in zip(images, checks, strict=True) if isinstance(c, str)]
    aspects = np.array([aspect for _, aspect in good], dtype=np.float32)
    return [path for path, _ in good], aspects, bad


def _per_image_variants(name: str, key: str, coupled: str) -> str:
    """The variants of a model that set `key` to another value than `coupled`, as options."""
    variants = model_entry(name).get("variants", {})
    return ", ".join(
        f"--variant {name}={variant}"
        for variant, spec in variants.items()
        if spec["config"].get(key, coupled) != coupled
    )


def _build(
    name: str, config: dict, profile: Profile, weights: dict, device: torch.device, source: str
) -> Scorer:
    """The model from its resolved config and files, on `device`, with its evaluation settings
    in float32; UserError for a config whose scores depend on the batch."""
    for key, coupled in BATCH_COUPLED.items():
        if config.get(key) == coupled:
            raise UserError(
                f"{source}: {name} with {key} = '{coupled}' scores an image differently in "
                f"another batch (DEVIATIONS.md); a model in the form "
                f"{_per_image_variants(name, key, coupled)} scores each image alone (README, "
                "'Scoring new images')"
            )
    torch.manual_seed(0)  # parts no file gives start the same way on every run
    model = create_model(name, profile.models, weights, config)
    settings = train_settings(config, profile, device, needs=tuple(model.needs))
    return Scorer(name, model.to(device), replace(settings, amp=False), source)


def from_stage(store: Store, stage_id: str, name: str, device: torch.device) -> Scorer:
    """The model a stored stage trained (round1, selftrain) or evaluated (evaluate)."""
    if not STAGE_ID.fullmatch(stage_id):
        raise UserError(f"--stage {stage_id}: not a stage id (16 hex digits, as --dry-run shows)")
    where = store.path(stage_id)
    status = store.status(stage_id)
    if status is None:
        raise UserError(f"{where}: no such stage in the results store (--dry-run names them)")
    if status["status"] != "ok":
        reason = (status.get("reason") or "no reason recorded").splitlines()[0]
        raise UserError(f"{where}: the stage is {status['status']} ({reason}): nothing to score")
    config = read_json(where / "config.json")
    kind = config.get("stage")
    if kind == "pretrain":
        raise UserError(f"{where}: a pretrain stage holds a model part, not a trained model")
    run = RunConfig.parse(config["parent"] if kind == "selftrain" else config)
    if name != run.model:
        raise UserError(f"{where}: a stage of {run.model}, not of --model {name}")
    weights = dict(run.weights) if kind == "evaluate" else {"model": where / "model.pt"}
    source = f"stage {stage_id} ({kind} of {run.model} on {run.dataset}, {run.profile.name})"
    return _build(run.model, dict(run.model_config), run.profile, weights, device, source)


def from_weights(request: Request, name: str, device: torch.device) -> Scorer:
    """`name` built from its --weights files, at the request's profile, dataset, variants and
    recipe keys."""
    files = request.weights.get(name)
    if not files:
        raise UserError(f"--score needs a trained {name}: --stage ID or --weights {name}=FILE")
    dataset = paper_dataset(request.dataset).lower() if request.dataset else None
    variants = tuple(request.variants.get(name, ()))
    config, _ = resolve_config(name, get_profile(request.profile).models, dataset, variants)
    recipe = {**request.recipe.get("*", {}), **request.recipe.get(name, {})}
    config = {**config, "recipe": {**config.get("recipe", {}), **recipe}}
    source = ", ".join(files.values())
    return _build(name, config, get_profile(request.profile), dict(files), device, source)


@torch.no_grad()
def head_outputs(scorer: Scorer, split: Split) -> np.ndarray:
    """(N, K) head outputs for every image of `split`, in order, with a progress bar."""
    scorer.model.eval()
    outputs = []
    with _float32(), tqdm(total=len(split), desc="scoring", unit="img") as bar:
        for x, _, index, extras in evaluation_batches(split, scorer.settings):
            outputs.append(scorer.model(x, **extras).float().cpu())
            bar.update(len(index))
    return torch.cat(outputs).numpy()


def score_table(files: list[str], outputs: np.ndarray, output: str) -> pd.DataFrame:
    """One row per image: file, score, bin1..bin10 (empty for a head that gives one score)."""
    if output == "score":
        bins = np.full((len(files), NUM_BINS), np.nan, dtype=np.float32)
    else:
        bins = distribution(torch.from_numpy(outputs), output).numpy()
    table = pd.DataFrame({"file": files, "score": predicted_scores(outputs, output)})
    for k in range(NUM_BINS):
        table[f"bin{k + 1}"] = bins[:, k]
    return table


def score_images(
    folder: Path, out: Path, name: str, stage: str | None, request: Request, how: Execution
) -> int:
    """--score: every readable image under `folder` scored into the CSV `out`; exit code 0."""
    check_settings(how.device, how.backend)
    if out.is_dir():
        raise UserError(f"{out}: --out is a folder; give a file, e.g. scores.csv")
    if stage and (request.weights or request.variants or request.recipe or request.dataset):
        raise UserError(f"--stage {stage} scores its model as stored: it takes no --weights, "
                        "--variant, --recipe or --dataset")  # fmt: skip
    images, others = image_files(folder)
    if not images:
        raise UserError(f"{folder}: no image files (.jpg, .png, ...) under it")
    device = resolve_device(how.device)
    if stage:
        scorer = from_stage(Store(how.results), stage, name, device)
    else:
        scorer = from_weights(request, name, device)
    paths, aspects, bad = readable(images)
    for path, problem in bad:
        print(f"{path}: unreadable image, skipped ({problem})", file=sys.stderr)
    if not paths:
        raise UserError(f"{folder}: none of its {len(images)} image files is readable")
    names = [path.relative_to(folder).as_posix() for path in paths]
    nan = np.full(len(paths), np.nan, dtype=np.float32)
    split = Split(images=paths, scores=nan, dists=None, ids=names, aspect=aspects)
    output = output_of(scorer.model)
    if output in HEAD_NOTES:
        print(f"note: {scorer.name}'s head {HEAD_NOTES[output]}", file=sys.stderr)
    table = score_table(names, head_outputs(scorer, split), output)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    skipped = f"; {len(bad)} unreadable skipped" if bad else ""
    ignored = f"; {others} other file(s) ignored (not named as images)" if others else ""
    print(f"{out}: {len(paths)} images scored with {scorer.source}{skipped}{ignored}")
    return 0
