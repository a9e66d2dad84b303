"""Loading an ImageNet checkpoint into a timm backbone, checked.

timm's own `pretrained=True` path loads non-strictly whenever the classifier changes, so a file
of the wrong model would load nothing without a word. Here the file is read without executing
code (`weights_only`), passed through the model family's `checkpoint_filter_fn` (which converts
the original releases' layouts, as timm does), stripped of the classifier, and must then cover
every weight of the backbone with the right shapes: otherwise a one-line UserError names the
file and the first problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from iaa_common import UserError

CONTAINERS = ("state_dict", "model", "params", "state_dict_ema")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file, unwrapped from the usual containers ({'state_dict': ...},
    {'model': ...}, {'params': ...}) and DataParallel's `module.` prefix."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a file torch can read without running code
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{path}: cannot read a state_dict from it ({first})") from None
    while isinstance(state, dict):
        inner = next((state[key] for key in CONTAINERS if isinstance(state.get(key), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{path}: not a state_dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_backbone(model: nn.Module, path: Path, what: str) -> None:
    """Load an ImageNet checkpoint of `what` (e.g. "timm swinv2_base_window8_256") into the
    timm model `model`, all but its classifier, or raise a UserError naming the file."""
    state = read_state_dict(path)
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as err:  # the file's layout is not one this family converts
            raise UserError(f"{path}: not a {what} checkpoint ({type(err).__name__})") from None
    classifier = model.pretrained_cfg.get("classifier", "head.fc") + "."
    state = {key: value for key, value in state.items() if not key.startswith(classifier)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(classifier)}
    problems = [f"missing {key}" for key in own if key not in state]
    problems += [f"unexpected {key}" for key in state if key not in own]
    problems += [
        f"{key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
        for key, value in own.items()
        if key in state and state[key].shape != value.shape
    ]
    if problems:
        raise UserError(
            f"{path}: not a {what} checkpoint ({len(problems)} problems; first: {problems[0]})"
        )
    model.load_state_dict(state, strict=False)
