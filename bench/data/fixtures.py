"""Fixture datasets in the official layouts of AVA, AADB, TAD66K and PARA, for a rehearsal.

`write_fixtures(root)` writes ``root/AVA``, ``root/AADB``, ``root/TAD66K`` and ``root/PARA``,
each a handful of procedurally drawn JPEG images (gradients, blobs and shapes from a seeded
RNG) with annotation files in the format the real dataset ships, so that the paper protocol
can be rehearsed end to end on a CPU: ``--data-root root`` reads them through the project's
own loaders (bench/data/real.py) unchanged, the unlabeled pool of each is drawn from the
other three (bench/data/registry.py), and every stage runs on real files.

THIS IS A FIXTURE OF THE LAYOUTS, NOT DATA. The images are abstract shapes and the scores are
random draws: no number computed on it (a correlation, an accuracy, a table cell) means
anything. Only the plumbing is exercised: file formats, split sizes, score scales, groups,
aspect ratios, image decoding.

What is written (``n_train``, ``n_val``, ``n_test`` images per split; defaults 12 / 4 / 6):

- ``AVA/AVA.txt``: one line per image, 15 whitespace-separated fields as in the AVA release:
  index, image id, the vote counts for ratings 1..10 (100-250 votes an image), two semantic tag
  ids (0 = none) and the challenge id; ``AVA/aesthetics_image_lists/generic_test.jpgl``: the
  ``n_test`` test ids, one a line; ``AVA/images/<id>.jpg``, long side 500-800 px. AVA has no
  official validation list: the loader carves val out of train.
- ``AADB/imgListFiles_label/imgList{Train,Validation,TestNew}Regression_score.txt``: lines
  ``<filename> <score>``, score in [0, 1] in steps of 0.05 (the mean of five 1-5 ratings,
  rescaled), Flickr-style names (``farm1_255_19452343093_8ee7e5e375_b.jpg``);
  ``AADB/datasetImages_originalSize/<filename>``, long side 800-1024 px (Flickr "_b" size).
  AADB's official train / validation / test lists hold ``n_train`` / ``n_val`` / ``n_test``.
- ``TAD66K/labels/merge/{train,test}.csv``: header ``image,score``, score on 0-10;
  ``TAD66K/labels/unmerge/{train,test}/<theme>.csv``: the same rows split by theme;
  ``TAD66K/images/<image>``, long side 500-1000 px.
- ``PARA/annotation/PARA-Giaa{Train,Test}.csv``: PARA's GIAA columns: ``imageName``,
  ``sessionId``, the per-bin rater counts ``aestheticScore_1.0`` ... ``aestheticScore_5.0``
  (9 bins, 0.5 apart), ``aestheticScore_mean`` / ``_std`` (1-5), ``qualityScore_mean`` /
  ``_std``, per-bin counts ``<attribute>_1`` ... ``_5`` with ``_mean`` / ``_std`` for
  compositionScore, colorScore, dofScore, lightScore, contentScore, contentPreference and
  willingnessToShare, then ``difficultyOfJudgment``, ``imgEmotion`` and ``semantic``;
  ``PARA/imgs/<sessionId>/<imageName>``, long side 1200-1600 px. (The column names follow
  public PARA loaders; their order and the value sets of the last three are this fixture's.)

Scores are long-tailed like each dataset's: a Student-t draw around the dataset's typical
mean, so most images are mid-range and a few are near the ends. Aspect ratios are the common
photo ratios between 2:3 and 3:2, landscape and portrait. Everything is deterministic from
``seed`` (the same seed gives byte-identical annotation files and images for one Pillow).

A marker file ``root/.iaa_fixtures.json`` records the generator version, the parameters and
every written file's size. A call whose marker matches (and whose files are all there) writes
nothing, so the harness can call `write_fixtures` before every rehearsal for free; other
parameters replace the fixture folders. Folders of those names that the generator did not write
(a real dataset) are never touched: that is an error.

Run ``python -m bench.data.fixtures ROOT [--seed S] [--n-train N] [--n-val N] [--n-test N]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from iaa_common import UserError

FIXTURE_VERSION = 1  # bump whenever what is written for given parameters changes
MARKER = ".iaa_fixtures.json"
GENERATOR = "bench.data.fixtures"
JPEG_QUALITY = 85
DEFAULT_N_TRAIN = 12
DEFAULT_N_VAL = 4  # AADB only: the others have no official validation split
DEFAULT_N_TEST = 6

# dataset name (bench.data.registry) -> folder under the root
FOLDERS: dict[str, str] = {"ava": "AVA", "aadb": "AADB", "tad66k": "TAD66K", "para": "PARA"}

# (width, height) ratios of common photo formats, landscape; portraits are their inverses
RATIOS = (3 / 2, 4 / 3, 5 / 4, 1.0)
RATIO_WEIGHTS = (0.45, 0.3, 0.1, 0.15)
PORTRAIT_SHARE = 0.3

# long side of the images in pixels, (low, high) inclusive
LONG_SIDE: dict[str, tuple[int, int]] = {
    "ava": (500, 800),
    "aadb": (800, 1024),
    "tad66k": (500, 1000),
    "para": (1200, 1600),
}

AVA_VOTES = (100, 250)  # votes an image, inclusive
AVA_CHALLENGES = 4  # distinct challenge ids drawn for the fixture
AVA_TAGS = 66  # semantic tag ids are 1..66, 0 = no tag
TAD66K_THEMES = ("animal", "architecture", "food", "landscape", "night", "portrait", "plant")
PARA_BINS = tuple(1.0 + 0.5 * k for k in range(9))  # 1.0, 1.5, ..., 5.0
PARA_RATERS = (20, 30)  # raters an image, inclusive
PARA_ATTRIBUTES = (
    "compositionScore",
    "colorScore",
    "dofScore",
    "lightScore",
    "contentScore",
    "contentPreference",
    "willingnessToShare",
)
PARA_SEMANTICS = ("portrait", "scene", "animal", "food", "building", "plant", "nightScene")
PARA_EMOTIONS = ("amusement", "contentment", "awe", "excitement", "neutral", "sadness")


@dataclass(frozen=True)
class _ImageJob:
    """One JPEG to draw: where, its size, and the seed of its content."""

    path: Path
    width: int
    height: int
    seed: tuple[int, ...]


# --- drawing ----------------------------------------------------------------------------------


def _sizes(rng: np.random.Generator, n: int, long_side: tuple[int, int]) -> list[tuple[int, int]]:
    """(width, height) of n photos: common ratios, ~30 % portraits; the first is a 3:2
    landscape and the second (when n > 1) a 2:3 portrait, so that a split always has both."""
    sizes = []
    for i in range(n):
        long = int(rng.integers(long_side[0], long_side[1] + 1))
        ratio = float(rng.choice(RATIOS, p=RATIO_WEIGHTS))
        portrait = bool(rng.random() < PORTRAIT_SHARE)
        if i < 2:
            ratio, portrait = 3 / 2, i == 1
        short = round(long / ratio)
        sizes.append((short, long) if portrait else (long, short))
    return sizes


def _draw(job: _ImageJob) -> None:
    """A cheap photo-like JPEG: a smooth colour field under a linear gradient (drawn small and
    scaled up), a few shapes, and fine grain (so that the file has a realistic size), all from
    the job's seed."""
    rng = np.random.default_rng(job.seed)
    w, h = job.width, job.height
    gw, gh = max(2, w // 250), max(2, h // 250)
    field = rng.uniform(20, 235, size=(gh, gw, 3))
    angle = rng.uniform(0, 2 * np.pi)
    t = np.linspace(0, 1, gw)[None, :] * np.cos(angle) + np.linspace(0, 1, gh)[:, None] * np.sin(
        angle
    )
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    top, bottom = rng.uniform(0, 255, size=(2, 3))
    small = 0.55 * field + 0.45 * (top + t[..., None] * (bottom - top))
    image = Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 7))):
        x0, x1 = sorted(rng.uniform(-0.1, 1.1, size=2) * w)
        y0, y1 = sorted(rng.uniform(-0.1, 1.1, size=2) * h)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            points = rng.uniform(0, 1, size=(int(rng.integers(3, 6)), 2)) * (w, h)
            draw.polygon([(float(x), float(y)) for x, y in points], fill=colour)
    grain = Image.fromarray(rng.integers(0, 15, size=(h, w), dtype=np.uint8))
    image = ImageChops.add(image, Image.merge("RGB", (grain, grain, grain)), offset=-7)
    job.path.parent.mkdir(parents=True, exist_ok=True)
    image.save(job.path, "JPEG", quality=JPEG_QUALITY)


# --- scores -------------------------------------------------------------------------------------


def _long_tailed(
    rng: np.random.Generator, n: int, centre: float, spread: float, low: float, high: float
) -> np.ndarray:
    """n scores: most near `centre`, a heavy-tailed (Student-t, 4 d.o.f.) few far off."""
    return np.clip(centre + spread * rng.standard_t(4, size=n), low, high)


def _counts(rng: np.random.Generator, n: int, bins: np.ndarray, mean: float, sd: float) -> list:
    """n ratings over `bins`, from a discretised normal around `mean`, as counts per bin."""
    weights = np.exp(-0.5 * ((bins - mean) / sd) ** 2)
    return [int(c) for c in rng.multinomial(n, weights / weights.sum())]


def _mean_std(counts: Sequence[int], bins: Sequence[float]) -> tuple[float, float]:
    c, b = np.asarray(counts, dtype=np.float64), np.asarray(bins, dtype=np.float64)
    mean = float(c @ b / c.sum())
    return mean, float(np.sqrt(c @ (b - mean) ** 2 / c.sum()))


# --- annotation writers -----------------------------------------------------------------------


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _unique_ints(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """n distinct integers in [low, high]."""
    return [int(v) + low for v in rng.choice(high - low + 1, size=n, replace=False)]


def _ava(folder: Path, seed: int, n_train: int, n_test: int, groups: int | None) -> list[_ImageJob]:
    rng = np.random.default_rng([seed, 0])
    n = n_train + n_test
    ids = _unique_ints(rng, n, 1, 955_000)
    test_ids = {ids[i] for i in rng.choice(n, size=n_test, replace=False)}
    challenges = _unique_ints(rng, groups or AVA_CHALLENGES, 1, 1_450)
    means = _long_tailed(rng, n, 5.4, 0.7, 1.5, 9.0)
    ratings = np.arange(1, 11, dtype=np.float64)
    lines = []
    for index, (image_id, mean) in enumerate(zip(ids, means, strict=True), 1):
        votes = int(rng.integers(AVA_VOTES[0], AVA_VOTES[1] + 1))
        counts = _counts(rng, votes, ratings, float(mean), float(rng.uniform(1.2, 1.8)))
        tag1 = int(rng.integers(1, AVA_TAGS + 1))
        tag2 = int(rng.integers(1, AVA_TAGS + 1)) if rng.random() < 0.7 else 0
        challenge = int(rng.choice(challenges))
        fields = [index, image_id, *counts, tag1, tag2, challenge]
        lines.append(" ".join(map(str, fields)))
    _write_lines(folder / "AVA.txt", lines)
    listed = [str(i) for i in ids if i in test_ids]
    _write_lines(folder / "aesthetics_image_lists" / "generic_test.jpgl", listed)
    return _jobs(rng, [folder / "images" / f"{i}.jpg" for i in ids], "ava", (seed, 0))


def _aadb_name(rng: np.random.Generator) -> str:
    """A Flickr-style AADB file name: farm<f>_<server>_<photo id>_<secret>_b.jpg."""
    farm = int(rng.integers(1, 10))
    server = int(rng.integers(1, 8_000))
    photo = int(rng.integers(10**9, 2 * 10**10))
    secret = "".join(rng.choice(list("0123456789abcdef"), size=10))
    return f"farm{farm}_{server}_{photo}_{secret}_b.jpg"


def _decimal(value: float) -> str:
    """A score as AADB writes it: up to two decimals, no trailing zeros (0.55, 0.6, 1, 0)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _aadb(folder: Path, seed: int, n_train: int, n_val: int, n_test: int) -> list[_ImageJob]:
    rng = np.random.default_rng([seed, 1])
    paths = []
    for split, n in (("Train", n_train), ("Validation", n_val), ("TestNew", n_test)):
        names = [_aadb_name(rng) for _ in range(n)]
        scores = np.round(_long_tailed(rng, n, 0.5, 0.12, 0.0, 1.0) * 20) / 20
        lines = [f"{name} {_decimal(score)}" for name, score in zip(names, scores, strict=True)]
        _write_lines(folder / "imgListFiles_label" / f"imgList{split}Regression_score.txt", lines)
        paths += [folder / "datasetImages_originalSize" / name for name in names]
    return _jobs(rng, paths, "aadb", (seed, 1))


def _tad66k(
    folder: Path, seed: int, n_train: int, n_test: int, groups: int | None
) -> list[_ImageJob]:
    rng = np.random.default_rng([seed, 2])
    ids = _unique_ints(rng, n_train + n_test, 1, 999_999)
    paths = []
    for split, split_ids in (("train", ids[:n_train]), ("test", ids[n_train:])):
        names = [f"{i}.jpg" for i in split_ids]
        scores = _long_tailed(rng, len(names), 5.3, 0.8, 0.5, 9.6)
        themes = rng.choice(TAD66K_THEMES[: groups or len(TAD66K_THEMES)], size=len(names))
        rows = [[name, f"{score:.3f}"] for name, score in zip(names, scores, strict=True)]
        _write_csv(folder / "labels" / "merge" / f"{split}.csv", ["image", "score"], rows)
        for theme in sorted(set(themes)):
            theme_rows = [row for row, t in zip(rows, themes, strict=True) if t == theme]
            path = folder / "labels" / "unmerge" / split / f"{theme}.csv"
            _write_csv(path, ["image", "score"], theme_rows)
        paths += [folder / "images" / name for name in names]
    return _jobs(rng, paths, "tad66k", (seed, 2))


def _para_header() -> list[str]:
    header = ["imageName", "sessionId"]
    header += [f"aestheticScore_{b:.1f}" for b in PARA_BINS]
    header += ["aestheticScore_mean", "aestheticScore_std", "qualityScore_mean", "qualityScore_std"]
    for attribute in PARA_ATTRIBUTES:
        header += [f"{attribute}_{k}" for k in range(1, 6)]
        header += [f"{attribute}_mean", f"{attribute}_std"]
    return [*header, "difficultyOfJudgment", "imgEmotion", "semantic"]


def _para_row(rng: np.random.Generator, name: str, session: str, centre: float) -> list[object]:
    raters = int(rng.integers(PARA_RATERS[0], PARA_RATERS[1] + 1))
    counts = _counts(rng, raters, np.array(PARA_BINS), centre, 0.55)
    mean, std = _mean_std(counts, PARA_BINS)
    row: list[object] = [name, session, *counts, f"{mean:.4f}", f"{std:.4f}"]
    five = np.arange(1, 6, dtype=np.float64)
    quality = _mean_std(_counts(rng, raters, five, mean + rng.normal(0, 0.2), 0.7), five)
    row += [f"{quality[0]:.4f}", f"{quality[1]:.4f}"]
    for _ in PARA_ATTRIBUTES:
        attribute = _counts(rng, raters, five, mean + rng.normal(0, 0.3), 0.8)
        row += [*attribute, *(f"{v:.4f}" for v in _mean_std(attribute, five))]
    row += [
        int(rng.choice([-1, 0, 1], p=[0.2, 0.6, 0.2])),
        str(rng.choice(PARA_EMOTIONS)),
        str(rng.choice(PARA_SEMANTICS)),
    ]
    return row


def _para(
    folder: Path, seed: int, n_train: int, n_test: int, groups: int | None
) -> list[_ImageJob]:
    rng = np.random.default_rng([seed, 3])
    numbers = _unique_ints(rng, n_train + n_test, 1, 31_220)
    n_sessions = groups or max(2, (n_train + n_test) // 5)
    sessions = [f"session{k}" for k in _unique_ints(rng, n_sessions, 1, 438)]
    paths = []
    for split, split_numbers in (("Train", numbers[:n_train]), ("Test", numbers[n_train:])):
        centres = _long_tailed(rng, len(split_numbers), 3.0, 0.45, 1.2, 4.8)
        rows = []
        for number, centre in zip(split_numbers, centres, strict=True):
            name, session = f"iaa_pub{number}_.jpg", str(rng.choice(sessions))
            rows.append(_para_row(rng, name, session, float(centre)))
            paths.append(folder / "imgs" / session / name)
        _write_csv(folder / "annotation" / f"PARA-Giaa{split}.csv", _para_header(), rows)
    return _jobs(rng, paths, "para", (seed, 3))


def _jobs(
    rng: np.random.Generator, paths: list[Path], name: str, key: tuple[int, int]
) -> list[_ImageJob]:
    """One image job a path, sized for dataset `name`, each with its own content seed."""
    sizes = _sizes(rng, len(paths), LONG_SIDE[name])
    return [
        _ImageJob(path, w, h, (*key, k))
        for k, (path, (w, h)) in enumerate(zip(paths, sizes, strict=True))
    ]


# --- the marker and the public API ------------------------------------------------------------


def _params(
    seed: int, n_train: int, n_val: int, n_test: int, groups: int | None = None
) -> dict[str, object]:
    params = {
        "version": FIXTURE_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "jpeg_quality": JPEG_QUALITY,
    }
    return params if groups is None else {**params, "groups": groups}


def _key(params: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _read_marker(root: Path) -> dict | None:
    """The marker's content, or None when there is none (or it is not ours / unreadable)."""
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("generator") == GENERATOR else None


def _folders(root: Path) -> dict[str, Path]:
    return {name: root / folder for name, folder in FOLDERS.items()}


def is_current(
    root: Path,
    seed: int = 0,
    n_train: int = DEFAULT_N_TRAIN,
    n_test: int = DEFAULT_N_TEST,
    n_val: int = DEFAULT_N_VAL,
    groups: int | None = None,
) -> bool:
    """Whether `root` holds a complete fixture written with these parameters (its marker
    matches and every file it lists is there at its recorded size)."""
    root = Path(root)
    marker = _read_marker(root)
    if marker is None or not marker.get("complete"):
        return False
    if marker.get("key") != _key(_params(seed, n_train, n_val, n_test, groups)):
        return False
    files = marker.get("files")
    if not isinstance(files, dict):
        return False
    for relative, size in files.items():
        try:
            if (root / relative).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _check_sizes(n_train: int, n_val: int, n_test: int) -> None:
    if n_train < 2:  # the loaders carve val out of train for AVA, TAD66K and PARA
        raise UserError(f"n_train must be at least 2 (val is carved from it), got {n_train}")
    if n_val < 1 or n_test < 1:
        raise UserError(f"n_val and n_test must be at least 1, got {n_val} and {n_test}")


def _clear(root: Path, marker: dict | None) -> None:
    """Remove the fixture folders a previous call wrote; refuse to touch any other folder that
    a loader would take for a dataset (names match case-insensitively, as `dataset_dir`)."""
    ours = set(marker.get("folders", [])) if marker else set()
    wanted = {folder.lower() for folder in FOLDERS.values()}
    found = [entry for entry in sorted(root.iterdir()) if entry.name.lower() in wanted]
    for entry in found:  # every folder checked before any is removed
        if entry.name not in ours or not entry.is_dir() or entry.is_symlink():
            raise UserError(
                f"{entry} exists and was not written by {GENERATOR}; refusing to overwrite it "
                f"(write the fixtures into an empty folder)"
            )
    for entry in found:
        shutil.rmtree(entry)


def write_fixtures(
    root: Path,
    seed: int = 0,
    n_train: int = DEFAULT_N_TRAIN,
    n_test: int = DEFAULT_N_TEST,
    n_val: int = DEFAULT_N_VAL,
    groups: int | None = None,
) -> dict[str, Path]:
    """Write the four fixture datasets under `root` (see the module docstring) and return
    {dataset name: its folder}. Does nothing when `root` already holds them for the same
    parameters; replaces them when the parameters differ. `n_val` is AADB's official
    validation list; the other datasets' loaders carve val out of the `n_train` images.
    `groups`: the number of AVA challenges, TAD66K themes and PARA sessions the images are
    dealt into (default: 4, every theme, one session per five images)."""
    root = Path(root)
    folders = _folders(root)
    if is_current(root, seed, n_train, n_test, n_val, groups):
        return folders
    _check_sizes(n_train, n_val, n_test)
    root.mkdir(parents=True, exist_ok=True)
    _clear(root, _read_marker(root))
    params = _params(seed, n_train, n_val, n_test, groups)
    marker = {
        "generator": GENERATOR,
        "note": "fixture of the dataset layouts, not data: no number computed on it means anything",
        "key": _key(params),
        "params": params,
        "folders": sorted(FOLDERS.values()),
        "complete": False,  # an interrupted write leaves folders this marker claims as ours
    }
    (root / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    jobs = [
        *_ava(folders["ava"], seed, n_train, n_test, groups),
        *_aadb(folders["aadb"], seed, n_train, n_val, n_test),
        *_tad66k(folders["tad66k"], seed, n_train, n_test, groups),
        *_para(folders["para"], seed, n_train, n_test, groups),
    ]
    with ThreadPoolExecutor() as pool:  # numpy, resize and the JPEG encoder release the GIL
        list(pool.map(_draw, jobs))
    marker["files"] = {
        path.relative_to(root).as_posix(): path.stat().st_size
        for folder in folders.values()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    marker["complete"] = True
    (root / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    return folders


# --- command line -------------------------------------------------------------------------------


def describe(folder: Path) -> list[str]:
    """Lines saying what a fixture folder holds: its annotation files (with their rows) and
    its images (count, size range)."""
    lines = []
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        if path.suffix.lower() in {".txt", ".csv", ".jpgl"}:
            rows = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line)
            lines.append(f"  {path.relative_to(folder)}  ({rows} lines)")
    images = [p for p in files if p.suffix.lower() == ".jpg"]
    sizes = []
    for path in images:
        with Image.open(path) as image:
            sizes.append(image.size)
    if images:
        longs = [max(s) for s in sizes]
        megabytes = sum(p.stat().st_size for p in images) / 1e6
        lines.append(
            f"  {len(images)} JPEG images, long side {min(longs)}-{max(longs)} px, "
            f"{megabytes:.1f} MB"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.data.fixtures",
        description="Write fixture datasets (AVA, AADB, TAD66K, PARA) in their official layouts "
        "for a CPU rehearsal. A fixture of the layouts, not data.",
    )
    parser.add_argument("root", type=Path, help="folder to write AVA/, AADB/, TAD66K/, PARA/ in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN)
    parser.add_argument("--n-val", type=int, default=DEFAULT_N_VAL, help="AADB only")
    parser.add_argument("--n-test", type=int, default=DEFAULT_N_TEST)
    args = parser.parse_args(argv)
    sizes = {"n_train": args.n_train, "n_test": args.n_test, "n_val": args.n_val}
    current = is_current(args.root, args.seed, **sizes)
    start = time.perf_counter()
    try:
        folders = write_fixtures(args.root, args.seed, **sizes)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    seconds = time.perf_counter() - start
    state = "already up to date, nothing written" if current else f"written in {seconds:.1f} s"
    print(f"fixture datasets under {args.root} (seed {args.seed}): {state}")
    print("A fixture of the layouts, NOT data: no number computed on it means anything.")
    for name, folder in folders.items():
        print(f"{name}: {folder}")
        for line in describe(folder):
            print(line)


if __name__ == "__main__":
    main()
