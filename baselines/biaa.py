"""BIAA (Zhu et al., IEEE TCYB 2020, "Personalized Image Aesthetics Assessment via Meta-Learning
With Bilevel Gradient Optimization", BLG-PIAA) as an IAA model.

Official code: zhuhancheng/BLG-PIAA `train_meta_model.py` (`Net`, `BaselineModel1`,
`train_model`, `exp_lr_scheduler`, `load_data`) and `finetune_model_newtask.py`.

Model (`Net`): a torchvision ResNet-18 *keeping its 1000-way ImageNet fc* (`resnet_layer`),
then the MLP `BaselineModel1` (`net`): FC(1000, 1024)-BN-PReLU-Dropout(.5)-FC(1024, 512)-BN-
PReLU-Dropout(.5)-FC(512, 1)-Sigmoid, trained with MSE on rating / 5 (FLICKR-AES ratings 1..5).
Here the last layer is FC(512, 10) without the sigmoid: logits over the rating bins 1..10, as
every model of the harness has (the loss takes the softmax: EMD for distributions, MSE on the
expected score for scalar labels; DEVIATIONS). Module names follow the official ones
(`resnet_layer.*` in torchvision's layout, `net.{fc1,bn1,relu1,fc2,bn2,relu2,fc3}`), so the
official files map one to one. PReLU has one shared slope, as in the official code. Paper
profile: 13,247,540 parameters (the official scalar head: 13,242,923; BASELINES.md 13.24M).

Pooled feature (where ELTA's TFA and FLSA attach, and FDS / RankSim): the 1000-d output of the
ResNet (its ImageNet "logits"), i.e. `forward_head` is BIAA's whole MLP. That is where the
official model splits into its two parts (`Net.resnet_layer` -> `Net.net`), the vector every
image is summarised by before BIAA's own regression head; a hidden MLP layer (the 512-d after
fc2) would leave BIAA's head as a single linear layer and put TFA's mixed rows through only
that, while mixing the ResNet output lets the mixed rows train the head BIAA added, as ELTA
mixes the backbone's pooled feature of its Swin V2 before its head. In training mode the
head's BatchNorm1d layers normalise mixed rows together with the batch (as any BN head would);
in eval mode they use running statistics, so outputs are batch independent.

`cpu` / `smoke` profiles: the same wiring, smaller: a BasicBlock ResNet [1, 1, 1, 1] with
16-32-64-128 channels whose "logit" fc has 64 outputs, MLP 64 -> 64 -> 32 -> 10, at 48 px
(smoke: 8-64 channels, 32-d, MLP 32 -> 32 -> 16 -> 10, 32 px).

Training procedure: BIAA's first-order bilevel meta-learning, `bench/train/meta_learning.py`
(the model-level `procedure` of models.toml).

Weights (`--weights biaa=FILE`, part `auto`, recognised by its keys; or `biaa.backbone=FILE`):
- an ImageNet ResNet-18 in torchvision's layout (`conv1.*`, `layer1.0.*`, ..., `fc` 512 ->
  1000, kept as officially): the ResNet; the MLP stays at init;
- `auto` only: the released FLICKR-AES meta-learned prior `Personality_Model/
  FlickrAES_Personal_Meta_resnet18.pt`, a whole module pickled by `torch.save(model)` (torch
  0.4.1; classes `Net` / `BaselineModel1` in `__main__`), or any state_dict with its keys
  (`resnet_layer.*`, `net.*`). The pickle is read without running it (`read_pickled_module`):
  only tensor-rebuild functions and plain containers are real; every `torch.nn` / torchvision
  / `__main__` class becomes an inert stub that stores its state, and anything else is
  refused. Its head FC(512, 1) does not fit the 10-bin head: the ResNet and the MLP's hidden
  layers (fc1, bn1, relu1, fc2, bn2, relu2, with BN running statistics) are loaded, fc3 stays
  at its random init (a warning says so). A file of this model with a 10-bin fc3 loads whole.
"""

from __future__ import annotations

import pickle
import types
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from iaa_common import NUM_BINS, UserError

# ----------------------------------------------------------------------------- the model


class ResNet(nn.Module):
    """torchvision's ResNet with BasicBlocks, its stage widths and depths configurable (the
    same module names, so torchvision files load): conv 7x7/2 - BN - ReLU - maxpool 3x3/2 -
    four stages - global average pool - fc. widths (64, 128, 256, 512), depths (2, 2, 2, 2),
    1000 outputs: resnet18."""

    def __init__(self, widths: Sequence[int], depths: Sequence[int], num_outputs: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = widths[0]
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            stride = 1 if stage == 0 else 2
            downsample = None
            if stride != 1 or channels != width:
                downsample = nn.Sequential(conv1x1(channels, width, stride), nn.BatchNorm2d(width))
            blocks = [BasicBlock(channels, width, stride, downsample)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
            channels = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_outputs)
        for module in self.modules():  # torchvision's init
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class AestheticsMLP(nn.Module):
    """The official `BaselineModel1` with a 10-bin output: FC-BN-PReLU-Dropout twice, then FC
    (no sigmoid). Module names are the official ones."""

    def __init__(self, in_features: int, hidden: Sequence[int], dropout: float):
        super().__init__()
        first, second = hidden
        self.fc1 = nn.Linear(in_features, first)
        self.bn1 = nn.BatchNorm1d(first)
        self.relu1 = nn.PReLU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(first, second)
        self.bn2 = nn.BatchNorm1d(second)
        self.relu2 = nn.PReLU()
        self.drop2 = nn.Dropout(dropout)
        self.fc3 = nn.Linear(second, NUM_BINS)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self.drop1(self.relu1(self.bn1(self.fc1(z))))
        z = self.drop2(self.relu2(self.bn2(self.fc2(z))))
        return self.fc3(z)


class BIAA(nn.Module):
    needs: tuple[str, ...] = ()

    def __init__(
        self,
        img_size: int,
        widths: Sequence[int],
        depths: Sequence[int],
        resnet_out: int,
        hidden: Sequence[int],
        dropout: float,
    ):
        super().__init__()
        self.img_size = img_size
        self.resnet_layer = ResNet(widths, depths, resnet_out)
        self.net = AestheticsMLP(resnet_out, hidden, dropout)
        self.feature_dim = resnet_out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, resnet_out): the ResNet's output, its fc kept (1000-d at paper): where the
        official `Net` hands over to BIAA's MLP head (module docstring)."""
        return self.resnet_layer(x)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------- weights

_REBUILD = {
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
}
_CONTAINERS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
}
_STUBBED = ("torch.nn.modules.", "torchvision.models.")  # and __main__


class _Stub:
    """An inert stand-in for a pickled class: keeps whatever state the pickle gives it."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _parameter(data: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
    return data  # torch < 1.0 pickled parameters as Parameter(data, requires_grad)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only tensor-rebuild functions and plain containers; module classes become
    stubs; everything else (functions that could run code) is refused."""

    stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _REBUILD:
            return getattr(torch._utils, name)
        if (module, name) in _CONTAINERS:
            return _CONTAINERS[module, name]
        if (module, name) == ("torch.nn.parameter", "Parameter"):
            return _parameter
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "__main__" or module.startswith(_STUBBED):
            key = (module, name)
            if key not in self.stubs:
                self.stubs[key] = type(name, (_Stub,), {"__module__": f"stub.{module}"})
            return self.stubs[key]
        raise pickle.UnpicklingError(f"refused to load the global {module}.{name}")


_restricted_pickle = types.ModuleType("biaa_restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler
_restricted_pickle.load = lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load()
_restricted_pickle.UnpicklingError = pickle.UnpicklingError


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


def read_pickled_module(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a whole module saved by `torch.save(model)` (legacy or zip format),
    read without executing the pickle (see `_RestrictedUnpickler`)."""
    try:
        with warnings.catch_warnings():  # legacy files: "Couldn't retrieve source code ..."
            warnings.simplefilter("ignore")
            obj = torch.load(
                path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False
            )
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(
            f"{path}: neither a state_dict nor a readable pickled model ({first})"
        ) from None
    if not isinstance(obj, _Stub) or not isinstance(getattr(obj, "_modules", None), dict):
        raise UserError(f"{path}: the pickle holds no torch module")
    return _module_state(obj)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file: a plain one (`torch.load(weights_only=True)`, unwrapped from
    {'state_dict' | 'model' | 'params': ...} and `module.`), else a whole pickled module."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain state_dict: maybe a whole pickled module
        state = read_pickled_module(path)
    while isinstance(state, dict):
        inner = next((state[k] for k in ("state_dict", "model", "params") if k in state), None)
        if not isinstance(inner, dict):
            break
        state = inner
    if not isinstance(state, dict) or not state or not all(map(torch.is_tensor, state.values())):
        raise UserError(f"{path}: not a state_dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def official_to_model(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official keys -> this model's: a torchvision ImageNet ResNet (`conv1.*`, ..., `fc.*`)
    goes under `resnet_layer.`; `resnet_layer.*` / `net.*` (the official `Net`) stay."""
    if any(key.startswith(("resnet_layer.", "net.")) for key in state):
        return dict(state)
    return {f"resnet_layer.{key}": value for key, value in state.items()}


def _load(model: BIAA, path: Path, part: str) -> None:
    state = official_to_model(read_weights(path))
    own = model.state_dict()
    whole = any(key.startswith("net.") for key in state)
    if whole and part != "auto":
        raise UserError(f"{path}: a whole BIAA model, not a backbone (give it as --weights biaa=)")
    expected = [k for k in own if k.startswith("resnet_layer." if not whole else "")]
    problems = [f"missing {k}" for k in expected if k not in state and "num_batches" not in k]
    problems += [f"unexpected {k}" for k in state if k not in own]
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    left_at_init = [k for k in mismatched if k.startswith("net.fc3.") and whole]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, expected {tuple(own[k].shape)}"
        for k in mismatched
        if k not in left_at_init
    ]
    if problems:
        raise UserError(
            f"{path}: not a BIAA {'model' if whole else 'ResNet backbone'} file for this config "
            f"({len(problems)} problems; first: {problems[0]})"
        )
    if left_at_init:
        shape = tuple(state[left_at_init[0]].shape)
        warnings.warn(
            f"{path}: the official scalar head net.fc3 {shape} does not fit the 10-bin head; "
            "net.fc3 stays at its random init (the ResNet and the MLP's hidden layers loaded)",
            stacklevel=3,
        )
    model.load_state_dict({k: v for k, v in state.items() if k not in left_at_init}, strict=False)


def build(weights: dict[str, Path] | None = None, **config) -> BIAA:
    """The registry's entry point (configs in models.toml)."""
    parts = dict(weights or {})
    unknown = set(parts) - {"auto", "backbone"}
    if unknown:
        raise UserError(f"biaa has one weights part, 'backbone' (got {', '.join(unknown)})")
    model = BIAA(**config)
    for part, path in parts.items():
        _load(model, Path(path), part)
    return model
