"""Training on real-format image files end to end: the file DataLoader path, the unlabeled pool
drawn from the other datasets under the data root, and APDS self-training on scalar labels."""

import dataclasses
import json

import pandas as pd

from bench import profiles
from bench.run.dag import Context, RunRequest, stages_for
from bench.run.stages import run_stage
from bench.run.store import Store
from bench.train.methods import MethodOptions
from tests.test_real_data import write_para, write_tad66k


def test_tad66k_files_train_with_all_three_modules(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_tad66k(root / "TAD66K", n_train=60, n_test=12)
    write_para(root / "PARA")  # the unlabeled pool comes from the other datasets
    smoke = profiles.PROFILES["smoke"]
    # the fixture's validation split is tiny: search on all of it, and let t = 0 select all
    lenient = dataclasses.replace(
        smoke, apds_val_fraction=1.0, apds_min_selected=1, apds_thresholds=(0.0,)
    )
    monkeypatch.setitem(profiles.PROFILES, "smoke", lenient)

    options = MethodOptions(tfa=True, flsa_weight=1.0, apds=True)
    request = RunRequest("tad66k", "swinv2", "smoke", 0, options, data_root=str(root))
    ctx = Context(results=tmp_path / "results", device="cpu")
    store = Store(ctx.results)
    for stage in stages_for(request):
        outcome = run_stage(stage, ctx)
        assert outcome["status"] == "ok", outcome["reason"]
    final = store.path(stage.id)
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["apds"]["n_pseudo"] == 7  # the whole pool: PARA's 10 - 3 validation images
    pseudo_ids = pd.read_csv(final / "pseudo_labels.csv")["id"]
    assert pseudo_ids.str.startswith("session").all()  # PARA's ids: sessionId/imageName
