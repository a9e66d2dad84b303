"""A rehearsal of the paper protocol on the CPU (`run_all.py --profile paper --rehearse`): the
paper profile's code path end to end in minutes, so that a first run on a GPU cluster is not the
first time it runs.

What it keeps from the paper profile: every model at its published size, with its paper
config (architecture, head, loss, input statistics, transforms and their filter, optimizer,
schedule, the last batch, evaluation batches, batch coupling); every stage kind (pretrain,
round1, selftrain, evaluate); the datasets' official file layouts, read by the real loaders.
What it changes, said in every caption and figure title:

- the data: fixture datasets in the four official layouts (bench/data/fixtures.py: a handful
  of JPEGs per split, one group of images per dataset so that BIAA's meta-learning has a task),
  unless --data-root names real data;
- the profile `rehearsal` (bench/profiles.py): the paper profile's model configs and recipes,
  at most one optimizer update of at most four images per stage, at a learning rate of at
  most 1e-4 (HGCN's 1e-2 and MUSIQ's 0.12 send a network from random initialisation to
  overflow in one step), MUSIQ's images at most 512 px on their longer side (its native size
  on PARA's 1,600-px images needs 13 GB), BatchNorm statistics averaged over the batches seen,
  and an APDS search that a couple of validation images and an untrained model can satisfy;
- every model from random initialisation (`--variant M=scratch`), TANet's theme network
  pre-trained by the harness (`harness_theme`): no pretrained file is needed;
- the smallest plan that still runs every model, method and stage kind at paper size at
  least once: Tables 1 and 3 as they are (every model, with and without ELTA; Table 1 on AVA
  and TAD66K, whose official heads differ), the tables whose rows all train the Swin V2
  baseline (2, 4, 5, the sampling table, Figure 5) on NIMA at its paper size instead (every
  method, a fifth of Swin V2-B's cost), the other tables on AVA, and Figure 5's grid cut to
  its corners, tau1 in {0.1, 0.5} x tau2 in {2, 6};

No number of a rehearsal means anything: it shows that the code runs, not how well.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from baselines import list_models
from baselines.registry import model_entry
from bench.data.fixtures import write_fixtures
from bench.profiles import get_profile
from bench.run.grid import DataSource, Request, Row

FIXTURE = {"n_train": 14, "n_test": 3, "n_val": 3, "groups": 1}  # 11 train, 3 val, 3 test
DATASETS = ("AVA", "TAD66K")
SUBSTITUTE = "nima"  # for the Swin V2 baseline in tables whose rows all train it
TAU1_GRID, TAU2_GRID = (0.1, 0.5), (2.0, 6.0)
NOTE = (
    "REHEARSAL of the paper protocol, not a result: fixture data in the datasets' official "
    "layouts ({data}), every model at its paper size and recipe but at most {max_steps} "
    "optimizer update of {max_batch} images per stage at a learning rate of at most {max_lr:g}, "
    "from random initialisation (TANet's "
    "theme network pre-trained by the harness), the Swin V2 baseline's ablations on {substitute}; "
    "no number here means anything."
)


def start_variant(model: str) -> str | None:
    """The variant that starts a model without its pretrained files, if it needs one."""
    variants = model_entry(model).get("variants", {})
    for name in ("harness_theme", "scratch"):
        if name in variants:
            return name
    return None


def rehearsal(request: Request, results: Path) -> Request:
    """The request rehearsed: the rehearsal profile, fixture data unless real data is given,
    the starts without files, and the caption's note."""
    data = request.data
    if data.root is None:
        root = results / "cache" / "fixtures"
        write_fixtures(root, **FIXTURE)
        data = DataSource(root, data.unlabeled)
    variants = dict(request.variants)
    for model in list_models():
        start = start_variant(model)
        if start is not None:
            variants[model] = (*variants.get(model, ()), start)
    profile = get_profile("rehearsal")
    where = "bench/data/fixtures.py" if request.data.root is None else str(data.root)
    note = NOTE.format(
        data=where,
        max_steps=profile.max_steps,
        max_batch=profile.max_batch,
        max_lr=profile.max_lr,
        substitute=SUBSTITUTE,
    )
    kept = DATASETS if request.dataset is None else None
    return replace(
        request, profile=profile.name, data=data, variants=variants, note=note, kept=kept,
        substitute=SUBSTITUTE,
    )  # fmt: skip


def stored_model(request: Request, results: Path, model: str = "tanet") -> Request:
    """The rehearsal's `evaluate` stage: `model`'s plain run on AVA, trained by the rehearsal,
    evaluated from its stored weights (`--eval-only --weights MODEL.model=FILE`)."""
    (cell,) = request.grid([Row(model, model)], ["AVA"]).cells()
    weights = {model: {"model": str((results / "runs" / cell.final.id / "model.pt").resolve())}}
    return replace(request, eval_only=True, weights=weights, substitute=None)
