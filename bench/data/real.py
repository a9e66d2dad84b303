"""Loaders for the official annotation formats of the four real IAA datasets.

Each loader takes the dataset's own directory (what `dataset_dir` returns) and gives an
`IAADataset` of image paths with scores on the paper's 10-point scale. Expected layout::

    AVA/                                  label_kind "dist"
        train.csv, test.csv [, val.csv]   CSV form (TANet, ELTA), used whenever train.csv exists:
                                          header image_id,score2,...,score11,tag1,tag2,tag3 where
                                          score2..score11 are the vote counts for ratings 1..10
        AVA.txt                           otherwise: index, image id, 10 vote counts, 2 tag ids,
        aesthetics_image_lists/           challenge id (whitespace separated); the ids listed in
            generic_test.jpgl             generic_test.jpgl (one per line) are test, the rest train
        images/<image_id>.jpg
    AADB/                                 scalar, "filename score" per line, score in [0, 1] (x10)
        imgListFiles_label/imgListTrainRegression_score.txt
        imgListFiles_label/imgListValidationRegression_score.txt
        imgListFiles_label/imgListTestNewRegression_score.txt
        datasetImages_originalSize/<filename>
    TAD66K/                               scalar, header image,score, score in [0, 10]
        labels/merge/train.csv, labels/merge/test.csv
        images/<image>
    PARA/                                 scalar, aestheticScore_mean in [1, 5] (x2); the other
        annotation/PARA-GiaaTrain.csv     columns (per-bin votes etc.) are ignored
        annotation/PARA-GiaaTest.csv
        imgs/<sessionId>/<imageName>

AVA distributions are the normalised vote counts and the score is their mean rating; rows
without votes are skipped with one warning per file.

Group ids (BIAA's meta-learning tasks) are AVA's challenge id (the last field of AVA.txt, `tag3`
of the CSV form), PARA's `sessionId`, and TAD66K's theme: the name of the per-theme file under
`labels/unmerge/{train,test}/<theme>.csv` that lists the image (none when that folder is absent).
AADB's score lists name no group, so AADB has none. Each image's aspect ratio (width / height of
the file, for HGCN) is read from its header with the check below.

Where a dataset has no official validation split (AVA without val.csv, TAD66K, PARA), a seeded
random `val_fraction` of train becomes val (at least 3 images: MIN_VAL).

Every listed image must exist and PIL must read its header (no decoding). Bad images are skipped
with one warning per split, unless there are more than `max_bad_images` of them, which is an
error. Bad annotations raise `UserError` with a one-line message naming the file (and the line).
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data.types import IAADataset, LabelKind, Split
from iaa_common import NUM_BINS, UserError

MIN_BAD_IMAGES = 10
MIN_VAL = 3  # a carved validation split has a correlation (and a batch statistic) to compute
BAD_IMAGE_FRACTION = 0.01
RATINGS = np.arange(1, NUM_BINS + 1, dtype=np.float64)
AVA_CSV_COUNTS = [f"score{j}" for j in range(2, NUM_BINS + 2)]
AVA_TXT_FIELDS = 15
AADB_FILES = {
    "train": "imgListTrainRegression_score.txt",
    "val": "imgListValidationRegression_score.txt",
    "test": "imgListTestNewRegression_score.txt",
}


def max_bad_images(n_listed: int) -> int:
    """How many missing or unreadable images a split that lists `n_listed` may skip."""
    return max(MIN_BAD_IMAGES, int(BAD_IMAGE_FRACTION * n_listed))


@dataclass(frozen=True)
class _Row:
    """One annotated image: its id, file, 10-point score and (AVA only) rating distribution."""

    id: str
    image: Path
    score: float
    dist: np.ndarray | None = None
    group: str | None = None


# --- reading annotation files ---------------------------------------------------------------


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a text annotation file with their 1-based line numbers."""
    if not path.is_file():
        raise UserError(f"missing annotation file: expected {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read annotation file ({err})") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise UserError(f"{path}: annotation file is empty")
    return lines


def _csv_rows(path: Path, required: list[str]) -> list[tuple[int, dict[str, str]]]:
    """Data rows of a CSV file with a header holding `required`, keyed by column name."""
    lines = _lines(path)
    header = [name.strip() for name in next(csv.reader([lines[0][1]]))]
    missing = [name for name in required if name not in header]
    if missing:
        raise UserError(f"{path}: header lacks required column(s) {', '.join(missing)}")
    rows = []
    for lineno, line in lines[1:]:
        fields = [field.strip() for field in next(csv.reader([line]))]
        if len(fields) != len(header):
            raise UserError(
                f"{path}, line {lineno}: expected {len(header)} comma-separated fields, "
                f"found {len(fields)}"
            )
        rows.append((lineno, dict(zip(header, fields, strict=True))))
    if not rows:
        raise UserError(f"{path}: annotation file is empty (a header but no rows)")
    return rows


def _number(text: str, path: Path, lineno: int, what: str) -> float:
    """`text` as a finite float, or a UserError naming the file, line and field."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{path}, line {lineno}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{path}, line {lineno}: {what} is {'NaN' if math.isnan(value) else text}")
    return value


def _score(text: str, low: float, high: float, path: Path, lineno: int, what: str) -> float:
    """`text` as a number in [low, high], or a UserError naming the file and line."""
    value = _number(text, path, lineno, what)
    if not low <= value <= high:
        raise UserError(f"{path}, line {lineno}: {what} {text} is outside [{low:g}, {high:g}]")
    return value


# --- per-dataset row parsers ----------------------------------------------------------------


def _ava_row(
    image_id: str, counts: list[str], challenge: str, root: Path, path: Path, lineno: int
) -> _Row | None:
    """An AVA row from its 10 vote counts, or None when nobody voted."""
    votes = np.array(
        [
            _number(text, path, lineno, f"vote count for rating {j}")
            for j, text in enumerate(counts, 1)
        ]
    )
    if (votes < 0).any():
        raise UserError(f"{path}, line {lineno}: negative vote count")
    total = votes.sum()
    if total == 0:
        return None
    dist = votes / total
    image = root / "images" / f"{image_id}.jpg"
    return _Row(image_id, image, float(dist @ RATINGS), dist, challenge)


def _voted(path: Path, rows: list[_Row | None]) -> list[_Row]:
    """The rows that have votes; one warning says how many had none."""
    kept = [row for row in rows if row is not None]
    if len(kept) < len(rows):
        warnings.warn(f"{path}: skipped {len(rows) - len(kept)} row(s) with no votes", stacklevel=2)
    return kept


def _ava_csv(path: Path, root: Path) -> list[_Row]:
    """Voted rows of one AVA CSV file (train.csv, val.csv or test.csv)."""
    rows = _csv_rows(path, ["image_id", *AVA_CSV_COUNTS])
    return _voted(
        path,
        [
            _ava_row(r["image_id"], [r[c] for c in AVA_CSV_COUNTS], r.get("tag3"), root, path, n)
            for n, r in rows
        ],
    )


def _ava_txt(path: Path, root: Path) -> list[_Row]:
    """Voted rows of AVA.txt, all splits together."""
    rows = []
    for lineno, line in _lines(path):
        fields = line.split()
        if len(fields) != AVA_TXT_FIELDS:
            raise UserError(
                f"{path}, line {lineno}: expected {AVA_TXT_FIELDS} fields, found {len(fields)}"
            )
        rows.append(_ava_row(fields[1], fields[2 : 2 + NUM_BINS], fields[-1], root, path, lineno))
    return _voted(path, rows)


def _aadb_rows(path: Path, root: Path) -> list[_Row]:
    """Rows of one AADB list file; scores in [0, 1] become 10-point scores."""
    rows = []
    for lineno, line in _lines(path):
        fields = line.split()
        if len(fields) != 2:
            raise UserError(
                f"{path}, line {lineno}: expected 2 fields (filename score), found {len(fields)}"
            )
        name, text = fields
        score = _score(text, 0, 1, path, lineno, "score")
        rows.append(_Row(name, root / "datasetImages_originalSize" / name, 10 * score))
    return rows


def _tad66k_themes(folder: Path) -> dict[str, str]:
    """Image -> theme, from the per-theme files `<folder>/<theme>.csv` (empty if none)."""
    if not folder.is_dir():
        return {}
    return {
        r["image"]: theme_file.stem
        for theme_file in sorted(folder.glob("*.csv"))
        for _, r in _csv_rows(theme_file, ["image"])
    }


def _tad66k_rows(path: Path, root: Path, split: str) -> list[_Row]:
    """Rows of one TAD66K merged CSV file; scores are already on 10 points."""
    themes = _tad66k_themes(root / "labels" / "unmerge" / split)
    return [
        _Row(
            r["image"],
            root / "images" / r["image"],
            _score(r["score"], 0, 10, path, n, "score"),
            group=themes.get(r["image"]),
        )
        for n, r in _csv_rows(path, ["image", "score"])
    ]


def _para_rows(path: Path, root: Path) -> list[_Row]:
    """Rows of one PARA GIAA CSV file; the 1-5 mean score is doubled."""
    column = "aestheticScore_mean"
    return [
        _Row(
            f"{r['sessionId']}/{r['imageName']}",
            root / "imgs" / r["sessionId"] / r["imageName"],
            2 * _score(r[column], 1, 5, path, n, column),
            group=r["sessionId"],
        )
        for n, r in _csv_rows(path, ["imageName", "sessionId", column])
    ]


# --- from rows to splits --------------------------------------------------------------------


def _aspect(path: Path) -> float | None:
    """Width / height of an image whose header PIL can read (the pixels are not decoded), or
    None when the file is missing or unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
        return width / height
    except Exception:  # any failure to open means the file is unusable
        return None


PROCESSES_FROM = 5_000  # images; below this, threads check the headers (no process start-up)


def readable_aspects(images: list[Path]) -> list[float | None]:
    """`_aspect` of every image: in threads for a few images, over every core in processes
    for many (a header is parsed in Python, so threads share one core)."""
    if len(images) < PROCESSES_FROM:
        with ThreadPoolExecutor() as pool:
            return list(pool.map(_aspect, images))
    workers = os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")  # torch may be loaded: never fork it
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(_aspect, images, chunksize=max(1, len(images) // (8 * workers))))


def _keep_readable(rows: list[_Row], where: str) -> tuple[list[_Row], np.ndarray]:
    """Drop rows whose image is missing or unreadable (one warning, or an error past the
    limit); return the kept rows and their images' aspect ratios."""
    aspects = readable_aspects([row.image for row in rows])
    ok = [aspect is not None for aspect in aspects]
    kept_aspects = np.array([a for a in aspects if a is not None], dtype=np.float32)
    bad = [row.image for row, good in zip(rows, ok, strict=True) if not good]
    if not bad:
        return rows, kept_aspects
    limit = max_bad_images(len(rows))
    if len(bad) > limit:
        raise UserError(
            f"{where}: {len(bad)} of {len(rows)} listed images are missing or unreadable "
            f"(limit {limit}); first: {bad[0]}"
        )
    shown = ", ".join(str(p) for p in bad[:3]) + (", ..." if len(bad) > 3 else "")
    warnings.warn(
        f"{where}: skipped {len(bad)} of {len(rows)} listed images that are missing or "
        f"unreadable: {shown}",
        stacklevel=2,
    )
    return [row for row, good in zip(rows, ok, strict=True) if good], kept_aspects


def _group_codes(*row_lists: list[_Row]) -> dict[str, int]:
    """One integer per group name of a dataset (sorted names -> 0, 1, ...), so that a group has
    the same id in every split; empty when no row names a group."""
    names = {row.group for rows in row_lists for row in rows if row.group is not None}
    return {name: k for k, name in enumerate(sorted(names))}


def _split(rows: list[_Row], source: Path, split: str, groups: dict[str, int]) -> Split:
    """A Split of the rows whose images are usable; an error if none are left."""
    where = f"{source} ({split} split)"
    aspects = np.empty(0, dtype=np.float32)
    if rows:
        rows, aspects = _keep_readable(rows, where)
    if not rows:
        raise UserError(f"{where}: the split is empty")
    return Split(
        images=[row.image for row in rows],
        scores=np.array([row.score for row in rows], dtype=np.float32),
        dists=None if rows[0].dist is None else np.stack([r.dist for r in rows]).astype(np.float32),
        ids=[row.id for row in rows],
        aspect=aspects,
        # -1: a row without a group in a dataset that has them
        group=np.array([groups.get(r.group, -1) for r in rows], dtype=np.int64) if groups else None,
    )


def _carve_val(train: Split, source: Path, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Split a seeded random `val_fraction` of train off as val; returns (train, val)."""
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n_val = max(MIN_VAL, round(val_fraction * len(train)))
    if n_val >= len(train):
        raise UserError(
            f"{source} (train split): {len(train)} image(s) are too few to carve a validation "
            f"split of fraction {val_fraction}; the training split would be empty"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    return train.subset(np.sort(order[n_val:])), train.subset(np.sort(order[:n_val]))


def _dataset(
    name: str,
    label_kind: LabelKind,
    train: tuple[list[_Row], Path],
    val: tuple[list[_Row], Path] | None,
    test: tuple[list[_Row], Path],
    val_fraction: float,
    seed: int,
) -> IAADataset:
    """Build the splits; without an official `val`, carve one out of train."""
    groups = _group_codes(train[0], test[0], val[0] if val else [])
    train_split = _split(*train, "train", groups)
    if val is None:
        train_split, val_split = _carve_val(train_split, train[1], val_fraction, seed)
    else:
        val_split = _split(*val, "val", groups)
    return IAADataset(name, label_kind, train_split, val_split, _split(*test, "test", groups))


# --- public loaders -------------------------------------------------------------------------


def load_ava(root: Path, val_fraction: float = 0.05, seed: int = 0) -> IAADataset:
    """AVA from its CSV form (train.csv, test.csv, optional val.csv) or else AVA.txt."""
    root = Path(root)
    if (root / "train.csv").is_file():
        train_file, test_file, val_file = (root / f"{s}.csv" for s in ("train", "test", "val"))
        train = (_ava_csv(train_file, root), train_file)
        test = (_ava_csv(test_file, root), test_file)
        val = (_ava_csv(val_file, root), val_file) if val_file.is_file() else None
    elif (root / "AVA.txt").is_file():
        txt_file = root / "AVA.txt"
        list_file = root / "aesthetics_image_lists" / "generic_test.jpgl"
        test_ids = {line.strip() for _, line in _lines(list_file)}
        rows = _ava_txt(txt_file, root)
        unknown = test_ids - {row.id for row in rows}
        if unknown:
            warnings.warn(
                f"{list_file}: {len(unknown)} test id(s) are not usable rows of {txt_file}",
                stacklevel=2,
            )
        train = ([row for row in rows if row.id not in test_ids], txt_file)
        test = ([row for row in rows if row.id in test_ids], list_file)
        val = None
    else:
        raise UserError(
            f"missing annotation file: expected {root / 'train.csv'} (CSV form) "
            f"or {root / 'AVA.txt'}"
        )
    return _dataset("ava", "dist", train, val, test, val_fraction, seed)


def load_aadb(root: Path, val_fraction: float = 0.1, seed: int = 0) -> IAADataset:
    """AADB with its official train/val/test lists (`val_fraction` and `seed` are unused)."""
    root = Path(root)
    files = {split: root / "imgListFiles_label" / name for split, name in AADB_FILES.items()}
    splits = {split: (_aadb_rows(path, root), path) for split, path in files.items()}
    return _dataset(
        "aadb", "scalar", splits["train"], splits["val"], splits["test"], val_fraction, seed
    )


def load_tad66k(root: Path, val_fraction: float = 0.1, seed: int = 0) -> IAADataset:
    """TAD66K from labels/merge/{train,test}.csv; val is carved from train."""
    root = Path(root)
    train_file, test_file = (root / "labels" / "merge" / f"{s}.csv" for s in ("train", "test"))
    train = (_tad66k_rows(train_file, root, "train"), train_file)
    test = (_tad66k_rows(test_file, root, "test"), test_file)
    return _dataset("tad66k", "scalar", train, None, test, val_fraction, seed)


def load_para(root: Path, val_fraction: float = 0.1, seed: int = 0) -> IAADataset:
    """PARA's GIAA annotation (aestheticScore_mean x2); val is carved from train."""
    root = Path(root)
    train_file, test_file = (root / "annotation" / f"PARA-Giaa{s}.csv" for s in ("Train", "Test"))
    train = (_para_rows(train_file, root), train_file)
    test = (_para_rows(test_file, root), test_file)
    return _dataset("para", "scalar", train, None, test, val_fraction, seed)


LOADERS: dict[str, Callable[..., IAADataset]] = {
    "ava": load_ava,
    "aadb": load_aadb,
    "tad66k": load_tad66k,
    "para": load_para,
}


def dataset_dir(data_root: Path, name: str) -> Path:
    """The directory `<data_root>/<NAME>`, with the name matched case-insensitively."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise UserError(f"data root {data_root} does not exist or is not a directory")
    matches = [p for p in data_root.iterdir() if p.is_dir() and p.name.lower() == name.lower()]
    if not matches:
        raise UserError(f"dataset directory for {name!r} not found under {data_root}")
    if len(matches) > 1:
        names = ", ".join(sorted(p.name for p in matches))
        raise UserError(f"ambiguous dataset directory for {name!r} under {data_root}: {names}")
    return matches[0]
