"""The results store: atomic commits, replacement, and cleaning what killed processes left."""

import os

from bench.run.store import Store, write_json


def _stage(store: Store, stage_id: str, value: int):
    tmp = store.begin(stage_id)
    write_json(tmp / "status.json", {"status": "ok", "value": value})
    return tmp


def test_commit_is_atomic_and_replaces_an_older_result(tmp_path):
    store = Store(tmp_path)
    tmp = _stage(store, "abc", 1)
    assert store.status("abc") is None  # not visible before the commit
    store.commit(tmp, "abc")
    assert store.is_ok("abc") and store.status("abc")["value"] == 1
    store.commit(_stage(store, "abc", 2), "abc")
    assert store.status("abc")["value"] == 2
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["abc"]


def test_failed_status_is_not_ok(tmp_path):
    store = Store(tmp_path)
    tmp = store.begin("bad")
    write_json(tmp / "status.json", {"status": "failed", "reason": "NaN"})
    store.commit(tmp, "bad")
    assert not store.is_ok("bad") and store.status("bad")["reason"] == "NaN"


def test_clean_removes_only_leftovers_of_dead_processes(tmp_path):
    store = Store(tmp_path)
    mine = store.begin("live")  # this process is alive
    dead = tmp_path / "runs" / ".tmp-0123456789abcdef-999999999-deadbeef"
    dead.mkdir()
    store.clean_temporaries()
    assert mine.exists() and not dead.exists()
    assert str(os.getpid()) in mine.name
