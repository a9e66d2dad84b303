"""A table of the paper from the results store: run its grid through the pipeline (nothing
with --cached-only), caption, render, write. Rendering is a pure function of the stored
records and the paper's numbers: it never trains.

    make_table(get_table("4"), Request(), Execution())  ->  Made(markdown, paths, failed)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.data.registry import paper_dataset
from bench.profiles import get_profile
from bench.run.grid import Request, Row
from bench.run.pipeline import Execution, Outcome, run
from tables.paper import paper_value
from tables.render import METRICS, build_view, render_latex, render_markdown
from tables.specs import TableSpec


@dataclass(frozen=True)
class Made:
    """What a table or figure command made: its printed text, the files it wrote, and
    whether any of its runs failed (their cells say so)."""

    text: str = ""
    paths: tuple[Path, ...] = ()
    failed: bool = False


def make_table(
    spec: TableSpec, request: Request, how: Execution, model: str | None = None
) -> Made | Outcome:
    """Run a table's grid (on `model` instead of the spec's, when given) and render it, one
    table per dataset or one in blocks (the spec's layout); a dry run returns the Outcome."""
    outcome = run([request.grid(rows_of(spec, request, model), spec.paper_datasets)], how)
    if how.dry_run:
        return outcome
    per_dataset = outcome.records[0]
    out = how.results / "tables"
    failed = any((runs["status"] == "failed").any() for runs in per_dataset.values())
    if spec.layout == "blocks":
        datasets = list(per_dataset)
        paper_names = [paper_dataset(dataset) for dataset in datasets]
        text = caption(spec, datasets, paper_names, request, per_dataset)
        markdown = write_blocks(spec, per_dataset, paper_names, text, out / spec.stem)
        return Made(markdown, _files(out / spec.stem), failed)
    texts, paths = [], []
    for dataset, runs in per_dataset.items():
        paper_name = paper_dataset(dataset)
        text = caption(spec, [dataset], [paper_name], request, {"": runs})
        stem = spec.stem if len(per_dataset) == 1 else f"{spec.stem}-{dataset}"
        texts.append(write_table(spec, runs, paper_name, text, out / stem))
        paths += _files(out / stem)
    return Made("\n".join(texts), tuple(paths), failed)


def rows_of(spec: TableSpec, request: Request, model: str | None = None) -> list[Row]:
    """A table's grid rows, on `model` (--model) instead of the spec's, or, for a table whose
    rows share one model, on the request's substitute (a rehearsal's)."""
    if model is None and len({row.model for row in spec.rows}) == 1:
        model = request.substitute
    return [row.row(model) for row in spec.rows]


def _files(stem: Path) -> tuple[Path, ...]:
    return tuple(stem.with_suffix(suffix) for suffix in (".md", ".tex", ".csv"))


def caption(
    spec: TableSpec,
    datasets: list[str],
    paper_names: list[str],
    request: Request,
    runs: dict[str, pd.DataFrame],
) -> str:
    """Where the cells came from: datasets (and their content fingerprints), profile, seeds,
    the code versions that ran (read from the `runs`' records), the models' recipes and
    variants, and the request's note (a rehearsal says so first)."""
    profile, seeds = request.profile, request.seeds
    codes = sorted({code for records in runs.values() for code in records["code"].dropna()})
    fingerprints = [f for records in runs.values() for f in dict.fromkeys(records["data"].dropna())]
    synthetic = all(dataset.startswith("synth-") for dataset in datasets)
    names, papers = ", ".join(datasets), ", ".join(paper_names)
    stand_in = f" (embedded benchmark standing in for {papers})" if synthetic else ""
    spread = "mean ± std" if seeds > 1 else "seed 0"
    best = "best per column of each dataset" if len(datasets) > 1 else "best per column"
    note = f"{request.note} " if request.note else ""
    return note + (
        f"{spec.caption} on {names}{stand_in}; profile {profile}, {seeds} "
        f"seed{'s' if seeds > 1 else ''} ({spread}), code {', '.join(codes) or 'unknown'}, "
        f"data {', '.join(fingerprints) or 'unknown'}. {recipes(profile, runs)}"
        f"{recipe_keys(request)}Ours beside the paper's numbers on {papers}; {best} in bold."
    )


SHARED_RECIPE = (
    "Every model on the {profile} profile's shared recipe, not its official one: a 10-bin "
    "softmax head trained with the per-sample EMD (MSE on the expected score for scalar "
    "labels), Adam at the profile's batch size and epochs, each model's learning rate chosen "
    "on validation, TANet's theme network per image and pre-trained by the harness, EAT's "
    "interest points per image. "
)


def recipes(profile: str, runs: dict[str, pd.DataFrame]) -> str:
    """What the models ran on: each its official recipe (paper) or the profile's shared one,
    and the named variants some rows use, with what each changes (baselines/models.toml)."""
    from baselines.registry import variant_description

    if get_profile(profile).models == "paper":
        text = "Every model on its official recipe (README, fidelity table) but where named. "
    else:
        text = SHARED_RECIPE.format(profile=profile)
    used: dict[tuple[str, str], list[str]] = {}
    for records in runs.values():
        for record in records.dropna(subset=["variants"]).itertuples():
            for name in record.variants.split("+"):
                rows = used.setdefault((record.model, name), [])
                rows += [] if record.row in rows else [record.row]
    for (model, name), rows in used.items():
        text += f"Variant {model}:{name} ({', '.join(rows)}): {variant_description(model, name)}. "
    return text


def recipe_keys(request: Request) -> str:
    """The recipe keys a command set over the models' own (--recipe, --emd), as set: a smaller
    batch's fit (batch_fit), a learning rate, an epoch count change what a row means."""
    keys = [
        f"{key if model == '*' else f'{model}.{key}'}={value}"
        for model, recipe in request.recipe.items()
        for key, value in recipe.items()
    ]
    return (
        f"Recipe keys set on the command line (--recipe, --emd): {', '.join(keys)}. "
        if keys
        else ""
    )


def choose_on_val(spec: TableSpec, results: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """For each of the spec's `choose_on_val` groups, the candidate row with the best mean
    validation SRCC over its ok runs: ({paper row key: chosen row key}, notes saying so)."""
    chosen, notes = {}, []
    if "val_srcc" not in results:  # no run is ok
        return chosen, notes
    for paper_key, candidates in spec.choose_on_val.items():
        ok = results[(results["status"] == "ok") & results["row"].isin(candidates)]
        val = ok.groupby("row")["val_srcc"].mean().dropna()  # NaN: constant predictions
        if val.empty:
            continue
        chosen[paper_key] = str(val.idxmax())
        listing = ", ".join(f"{row} {val[row]:.3f}" for row in candidates if row in val)
        notes.append(f"Chosen on validation SRCC: {chosen[paper_key]} ({listing}).")
    return chosen, notes


def write_blocks(
    spec: TableSpec, per_dataset: dict[str, pd.DataFrame], paper_names: list[str], text: str,
    out: Path,
) -> str:  # fmt: skip
    """Every dataset in one table, a block of the spec's rows per dataset (layout "blocks"):
    Markdown and LaTeX to `out`.md / .tex, the per-seed records (with a dataset column) to
    `out`.csv; return the Markdown."""
    if spec.choose_on_val:
        raise ValueError(f"{spec.title}: choose_on_val needs the one-table-per-dataset layout")
    rows, blocks, paper, runs = [], [], {}, []
    for (dataset, results), paper_name in zip(per_dataset.items(), paper_names, strict=True):
        for k, row in enumerate(spec.rows):
            key = f"{dataset}/{row.key}"
            rows.append((key, [dataset if k == 0 else "", *row.descriptors]))
            blocks.append(dataset)
            for m in METRICS:
                table = spec.paper_table or spec.key
                paper[(key, m.key)] = paper_value(table, paper_name, row.key, m.key)
        runs.append(results.assign(dataset=dataset))
    records = pd.concat(runs, ignore_index=True)
    keyed = records.assign(row=records["dataset"] + "/" + records["row"])
    view = build_view(
        spec.title, text, rows, spec.header_columns, keyed, paper, notes=tuple(spec.notes),
        blocks=blocks,
    )  # fmt: skip
    return _write(view, records, out)


def _write(view, records: pd.DataFrame, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(view)
    out.with_suffix(".md").write_text(markdown)
    out.with_suffix(".tex").write_text(render_latex(view))
    records.to_csv(out.with_suffix(".csv"), index=False)
    return markdown


def write_table(
    spec: TableSpec, results: pd.DataFrame, paper_name: str, text: str, out: Path
) -> str:
    """Render Markdown and LaTeX to `out`.md and `out`.tex, the per-seed records to `out`.csv;
    return the Markdown."""
    chosen, choice_notes = choose_on_val(spec, results)
    paper_key = {row.key: row.paper_key or row.key for row in spec.rows}
    paper_key.update({row_key: key for key, row_key in chosen.items()})
    paper = {
        (row.key, m.key): paper_value(
            spec.paper_table or spec.key, paper_name, paper_key[row.key], m.key
        )
        for row in spec.rows
        for m in METRICS
    }
    rows = [
        (row.key, [row.descriptors[0] + " (chosen on val)", *row.descriptors[1:]])
        if row.key in chosen.values()
        else (row.key, row.descriptors)
        for row in spec.rows
    ]
    notes = (*spec.notes, *choice_notes)
    view = build_view(
        spec.title, text, rows, spec.header_columns, results, paper, notes=notes,
        blocks=spec.row_blocks, change_against=spec.change_against,
    )  # fmt: skip
    return _write(view, results, out)
