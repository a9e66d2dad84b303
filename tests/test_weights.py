"""baselines/weights.py: the one reader of weight files (containers, prefixes, Jittor and numpy
pickles, whole pickled modules, refused code) and the one checked load."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from baselines.weights import JITTOR_TAG, load_checked, read_state_dict
from iaa_common import UserError


def _toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))


def test_containers_and_the_dataparallel_prefix_are_unwrapped(tmp_path):
    t = torch.arange(3.0)
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "model": {"params": {"module.a.weight": t}}}, path)
    assert read_state_dict(path).keys() == {"a.weight"}
    torch.save({"state_dict": {"a": t}, "state_dict_ema": {"b": t}}, path)  # the first wins
    assert read_state_dict(path).keys() == {"a"}
    torch.save({"state_dict_ema": {"b": t}, "optimizer": {"lr": 1.0}}, path)
    assert read_state_dict(path).keys() == {"b"}


def test_a_whole_pickled_module_is_read_without_its_classes(tmp_path):
    model = _toy()
    model.register_buffer("scratch", torch.zeros(1), persistent=False)
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(pickle.UnpicklingError):  # not weights only: the fallback reads it
        torch.load(path, weights_only=True)
    state = read_state_dict(path)
    assert state.keys() == model.state_dict().keys()  # no non-persistent buffer
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key


def _jittor_save(obj, path):
    data = pickle.dumps(obj, 4)
    path.write_bytes(data + hashlib.sha1(data).digest() + JITTOR_TAG)


def test_numpy_pickles_jittor_or_plain_become_tensors(tmp_path):
    state = {"w": np.arange(4, dtype=np.float32).reshape(2, 2), "n": np.int64(7)}
    jittor, plain = tmp_path / "ckpt.pkl", tmp_path / "plain.pkl"
    _jittor_save({"state_dict": state}, jittor)
    plain.write_bytes(pickle.dumps(state, 4))
    for path in (jittor, plain):
        read = read_state_dict(path)
        assert torch.equal(read["w"], torch.arange(4.0).view(2, 2)) and read["n"].item() == 7
    data = bytearray(jittor.read_bytes())
    data[3] ^= 0xFF
    jittor.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"ckpt\.pkl: a Jittor file with a wrong checksum"):
        read_state_dict(jittor)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch", "pickle", "jittor"])
def test_a_file_that_would_run_code_is_refused(tmp_path, writer):
    marker = tmp_path / "ran"
    obj = {"w": _Exploit(marker)}
    path = tmp_path / "evil.bin"
    if writer == "torch":
        torch.save(obj, path)
    elif writer == "pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        _jittor_save(obj, path)
    with pytest.raises(UserError, match=r"evil\.bin: cannot read .*refused .*global .*system"):
        read_state_dict(path)
    assert not marker.exists()


def test_unreadable_and_wrong_files_are_one_line_user_errors(tmp_path):
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a checkpoint")
    numbers = tmp_path / "numbers.pth"
    torch.save({"lr": 0.1}, numbers)
    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    cases = {
        garbage: r"notes\.txt: cannot read weights from it \(invalid load key",
        numbers: r"numbers\.pth: not a state_dict of tensors",
        empty: r"empty\.pth: not a state_dict of tensors",
        tmp_path / "nothing.pth": r"nothing\.pth: weights file not found",
    }
    for path, message in cases.items():
        with pytest.raises(UserError, match=message) as err:
            read_state_dict(path)
        assert "\n" not in str(err.value)


def test_checked_load_lists_the_first_problem_and_counts_them(tmp_path):
    model = _toy()
    state = {k: v + 1 for k, v in model.state_dict().items()}
    path = tmp_path / "f.pth"
    bad = {**state, "0.weight": torch.zeros(3, 5), "extra": torch.zeros(1)}
    del bad["0.bias"]
    with pytest.raises(UserError) as err:
        load_checked(model, bad, path, "a toy")
    assert str(err.value) == f"{path}: not a toy (3 problems; first: missing key 0.bias)"
    with pytest.raises(UserError, match=r"not a toy \(1 problem; first: 0.weight has shape"):
        load_checked(model, {**state, "0.weight": torch.zeros(3, 5)}, path, "a toy")
    assert torch.equal(model[0].bias, _toy()[0].bias)  # nothing loaded on an error


def test_checked_load_loads_what_the_file_covers(tmp_path):
    model = _toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    part = {k: v + 1 for k, v in before.items() if k.startswith("1.")}
    del part["1.num_batches_tracked"]  # optional: older releases have no counters
    with pytest.raises(UserError, match="missing key 0.weight"):
        load_checked(model, part, tmp_path / "f.pth", "a toy")
    load_checked(model, part, tmp_path / "f.pth", "a toy", lambda key: key.startswith("1."))
    after = model.state_dict()
    for key, value in before.items():
        expected = part.get(key, value)
        assert torch.equal(after[key], expected), key
