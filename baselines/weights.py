"""Weight files: the one reader and the one checked load of every model (as timm's
`_helpers.py`). A model family keeps only its key conversion (the official names -> its own, as
timm's per-family `checkpoint_filter_fn`) and says which of its keys a file must cover.

Reading (`read_state_dict`) never runs code from the file. It tries, in turn:
- a Jittor file (`jittor.save`: a pickle of numpy arrays, its SHA-1 and the tag b"HCAJSLHD"; the
  checksum is verified), read by the restricted unpickler below;
- `torch.load(weights_only=True)`: a state_dict in PyTorch's formats;
- the same file through the restricted unpickler: a whole module saved by `torch.save(model)`
  (e.g. BIAA's released prior), whose classes need not exist here;
- a plain pickle of numpy arrays (a Jittor state without its trailer).
The restricted unpickler resolves only tensor and numpy-array reconstruction and plain
containers; a class of `torch.nn`, torchvision or `__main__` becomes an inert stub that keeps the
state the pickle gives it (a module's `_parameters`, `_buffers`, `_modules`); any other global
(a function that could run code) is refused. The object read is unwrapped from the usual
containers ({'state_dict' | 'model' | 'params' | 'state_dict_ema': ...}, a whole module) and
DataParallel's `module.` prefix, and numpy arrays become tensors.

Loading (`load_checked`) compares the converted state with the model's state_dict: keys the
model requires but the file lacks, keys the file has but the model does not, and shapes that
differ. Any problem is a one-line UserError naming the file, the first problem and their
count; otherwise the file's tensors are loaded (`load_state_dict(strict=False)`: the keys a
file need not cover keep their values).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from numpy._core import multiarray as _multiarray  # numpy 1.x pickles name numpy.core
from torch import nn

from iaa_common import UserError

CONTAINERS = ("state_dict", "model", "params", "state_dict_ema")
OPTIONAL = ("num_batches_tracked",)  # BatchNorm counters: older releases predate them
JITTOR_TAG = b"HCAJSLHD"  # jittor.save: pickle + sha1(pickle) + this tag
_TRAILER = 20 + len(JITTOR_TAG)  # the SHA-1 digest and the tag

# ----------------------------------------------------------------------------- reading

_ALLOWED = {
    **{("torch._utils", name): getattr(torch._utils, name) for name in (
        "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
        "_rebuild_parameter_with_state",
    )},
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(module, name): getattr(_multiarray, name)
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name in ("_reconstruct", "scalar")},
}  # fmt: skip
_STUBBED = ("torch.nn.modules.", "torchvision.models.")  # and __main__


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global the restricted unpickler does not resolve."""


class _Stub:
    """An inert stand-in for a pickled class: keeps whatever state the pickle gives it."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


_STUBS: dict[tuple[str, str], type] = {}


def _parameter(data: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
    return data  # torch < 1.0 pickled parameters as Parameter(data, requires_grad)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves tensor and numpy-array reconstruction and plain containers; module classes
    become stubs; every other global is refused (module docstring)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if (module, name) == ("torch.nn.parameter", "Parameter"):
            return _parameter
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "__main__" or module.startswith(_STUBBED):
            if (module, name) not in _STUBS:
                _STUBS[module, name] = type(name, (_Stub,), {"__module__": f"stub.{module}"})
            return _STUBS[module, name]
        raise _Refused(f"refused to load the global {module}.{name}")


# torch.load's `pickle_module`: the restricted unpickler inside torch's file formats
_restricted_pickle = types.ModuleType("restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler
_restricted_pickle.load = lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load()
_restricted_pickle.UnpicklingError = pickle.UnpicklingError


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _read_jittor(path: Path) -> object:
    data = path.read_bytes()
    payload, checksum = data[:-_TRAILER], data[-_TRAILER : -len(JITTOR_TAG)]
    if hashlib.sha1(payload).digest() != checksum:
        raise UserError(f"{path}: a Jittor file with a wrong checksum (corrupt file?)")
    try:
        return _RestrictedUnpickler(io.BytesIO(payload)).load()
    except Exception as err:  # refused globals, truncated data
        raise UserError(f"{path}: cannot read weights from it ({_first_line(err)})") from None


def _read_torch(path: Path) -> object:
    return torch.load(path, map_location="cpu", weights_only=True)


def _read_whole_module(path: Path) -> object:
    return torch.load(
        path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False
    )


def _read_pickle(path: Path) -> object:
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f).load()


def _is_jittor(path: Path) -> bool:
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        f.seek(max(size - len(JITTOR_TAG), 0))
        return size > _TRAILER and f.read() == JITTOR_TAG


def _read(path: Path) -> object:
    """The object a weights file holds, read by the first reader that understands it."""
    if _is_jittor(path):
        return _read_jittor(path)
    errors = {}
    for reader in (_read_torch, _read_whole_module, _read_pickle):
        try:
            with warnings.catch_warnings():  # legacy files: "source code has changed" etc.
                warnings.simplefilter("ignore")
                return reader(path)
        except Exception as err:  # not this format: try the next reader
            errors[reader] = err
    # A refused global says most; else the restricted torch reader's error (the first line of
    # weights_only's is a generic notice).
    refused = [err for err in errors.values() if isinstance(err, _Refused)]
    cause = refused[0] if refused else errors[_read_whole_module]
    raise UserError(f"{path}: cannot read weights from it ({_first_line(cause)})") from None


def _module_state(stub: _Stub, prefix: str = "") -> dict[str, torch.Tensor]:
    """A state_dict from a stubbed nn.Module: its `_parameters`, persistent `_buffers` and,
    recursively, `_modules`."""
    state = {}
    skip = getattr(stub, "_non_persistent_buffers_set", set())
    for table in ("_parameters", "_buffers"):
        for name, value in (getattr(stub, table, None) or {}).items():
            if torch.is_tensor(value) and name not in skip:
                state[prefix + name] = value.detach()
    for name, child in (getattr(stub, "_modules", None) or {}).items():
        if isinstance(child, _Stub):
            state.update(_module_state(child, f"{prefix}{name}."))
    return state


def _unwrap(obj: object) -> object:
    """The state inside the usual containers and whole pickled modules."""
    while True:
        if isinstance(obj, _Stub):
            return _module_state(obj)
        if not isinstance(obj, Mapping):
            return obj
        inner = next((obj[k] for k in CONTAINERS if isinstance(obj.get(k), Mapping | _Stub)), None)
        if inner is None:
            return obj
        obj = inner


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict a weights file holds, in the file's own key names (module docstring),
    `module.` stripped; a one-line UserError naming the file when there is none."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    state = _unwrap(_read(path))
    if isinstance(state, Mapping):
        state = {
            key: torch.from_numpy(np.array(value))
            if isinstance(value, np.ndarray | np.generic)
            else value
            for key, value in state.items()
        }
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items())
    ):
        raise UserError(f"{path}: not a state_dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


# ----------------------------------------------------------------------------- loading


def load_checked(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: Path,
    what: str,
    required: Callable[[str], bool] = lambda key: True,
) -> None:
    """Load `state`, already in the model's key names, into `model`, checked: every key of
    the model's state_dict that is `required` (BatchNorm's num_batches_tracked excepted) must be
    in `state`, every key of `state` must be the model's, with the model's shape. Otherwise a
    UserError "{path}: not {what} (N problems; first: ...)". Keys not in `state` keep their
    values."""
    own = model.state_dict()
    problems = [
        f"missing key {key}"
        for key in own
        if key not in state and required(key) and not key.endswith(OPTIONAL)
    ]
    problems += [f"unexpected key {key}" for key in state if key not in own]
    problems += [
        f"{key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
        for key, value in own.items()
        if key in state and state[key].shape != value.shape
    ]
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise UserError(f"{path}: not {what} ({count}; first: {problems[0]})")
    model.load_state_dict(state, strict=False)


def load_timm_backbone(model: nn.Module, path: Path, what: str) -> None:
    """Load an ImageNet checkpoint of `what` (e.g. "timm swinv2_base_window8_256") into the timm
    model `model`, all but its classifier, checked.

    timm's own `pretrained=True` loads non-strictly whenever the classifier changes, so a file
    of another model would load nothing without a word. Here the file passes through the
    family's `checkpoint_filter_fn` (which converts the original releases' layouts, as timm
    does), loses its classifier, and must cover every other weight of the model."""
    state = read_state_dict(path)
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as err:  # the file's layout is not one this family converts
            raise UserError(f"{path}: not a {what} checkpoint ({type(err).__name__})") from None
    classifier = model.pretrained_cfg.get("classifier", "head.fc") + "."
    state = {key: value for key, value in state.items() if not key.startswith(classifier)}
    load_checked(
        model, state, path, f"a {what} checkpoint", lambda key: not key.startswith(classifier)
    )
