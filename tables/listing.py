"""`run_all.py --list`: the models (with their weight parts and variants), methods, datasets,
tables, figures and profiles."""

from __future__ import annotations

from baselines import list_models
from baselines.registry import describe_model
from bench.data.registry import dataset_names
from bench.profiles import PROFILES
from tables.specs import FIGURES, TABLES


def listing() -> str:
    lines = [
        "models (one run: --model NAME [--methods tfa,flsa,apds]; a table on it: --table 4 "
        "--model NAME):"
    ]
    for name, description in list_models().items():
        lines += [
            f"  {name:10s} {description}",
            *(f"  {'':10s}   {d}" for d in describe_model(name)),
        ]
    lines += [
        "methods: tfa (feature|pixel level; elta|random|threshold sampling), flsa, apds;",
        "         lds, fds, ranksim (deep imbalanced regression, baselines/dir)",
        f"datasets: {', '.join(dataset_names())}",
        "tables:",
        *(
            f"  {key:10s} {spec.title}: {spec.caption} ({', '.join(spec.paper_datasets)})"
            for key, spec in TABLES.items()
        ),
        "figures:",
        *(f"  {key:10s} {text}" for key, text in FIGURES.items()),
        "profiles:",
        *(f"  {name:10s} {profile.description}" for name, profile in PROFILES.items()),
    ]
    return "\n".join(lines)
