"""BIAA (Zhu et al., IEEE TCYB 2020, "Personalized Image Aesthetics Assessment via Meta-Learning
With Bilevel Gradient Optimization", BLG-PIAA) as an IAA model, with its training procedure.

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

Training procedure (`MetaLearning`, the model-level `procedure` of models.toml): first-order
bilevel meta-learning over tasks, as `train_model`:
- A task is a group of images: `Split.group` (AVA's challenge, TAD66K's theme, PARA's session;
  the embedded benchmark's scene category). The official tasks are FLICKR-AES workers. A
  dataset without groups (AADB: `group` None), and the rows of a dataset whose group id is -1,
  are dealt each epoch into random groups of `support + query` images.
- From a group of n images: a support set of s = min(support, floor(0.8 n)) images and a
  disjoint query set of q = min(query, n - s) (official: 80 support images when the worker has
  >= 110, else 80 % of them; query batches of support / 4, the first of which is used).
  Groups with s < 2 or q < 2 are skipped (BatchNorm in training mode needs two rows).
- Per task: `inner_steps` optimizer steps on the support batch, then `inner_steps` on the
  query batch (5 and 5 officially), each one call of the shared `bench.train.training_loss`
  (so TFA, FLSA and later regularisers plug in unchanged). The support batch is drawn with the
  training transform, the query batch with the evaluation one, as the official loaders do;
  each batch is drawn once and reused for its `inner_steps` steps, as officially. One
  DataLoader per epoch, whose items are whole tasks, prepares them (with the profile's
  workers for image files), so workers start once an epoch, not twice a task.
- Tasks are taken `tasks_per_meta` at a time (`task_num` = 4): every task of such a group
  starts from the meta weights at the group's start (the official `temp_model`), and after each
  task the meta weights move toward its adapted weights. The official code writes
  `meta += (theta_task - meta) / task_num` with `meta` already moved by the earlier tasks of
  the group, which after a group of 4 keeps 81/256 of the start and weighs the tasks
  27:36:48:64 (/256); that is an in-place slip of batched Reptile (why else restart every
  task from the group's snapshot?), fixed here: `meta += meta_step * (theta_task - theta_start)`, so
  a full group sets meta = start + meta_step * sum_k (theta_k - start), with meta_step =
  1 / task_num the mean of the tasks' adapted weights. `official_meta_update = true` restores
  the official form.
- Only parameters are meta-learned: the BatchNorm running statistics are never reset and
  accumulate over every inner step, as in the official working `model`.
- One optimizer (the recipe's: Adam, lr 1e-4 for the ResNet, 1e-3 for the MLP at paper) is
  shared by all tasks and epochs, its moments carried from task to task, as officially (and
  as in the reference Reptile code, which restores only the model's variables).
- An epoch: one task per group in a shuffled order (officially every worker once), or
  `tasks_per_epoch` tasks if set (the groups' order reshuffled when they run out). The last
  group of tasks of an epoch may be partial; every epoch starts a new group, as officially.
  On the embedded benchmark (10 scene categories) an epoch is 10 tasks of 80 + 20 images,
  5 + 5 steps each: 5,000 image-gradients (about two supervised epochs of 2,400 images) and 3
  meta updates (4 + 4 + 2 tasks); on AVA about 1,400 challenges, on AADB (about 8,500 training
  images, no groups) about 85 random groups of 100.
- With a pseudo-labelled split (APDS self-training, eq. 10), every inner step appends the
  next pseudo-labelled batch, in proportion to its labelled rows (`pseudo_batch_size`); the
  pool has no groups.
- After each epoch the model holds the meta weights, which the harness validates (keeping the
  best epoch). The official code saves the last task-adapted `model` of the last epoch instead
  (the meta model is never saved), and decays the lr with `exp_lr_scheduler`, which multiplies
  the *current* lr by 0.9^epoch each epoch: lr_e = lr_0 0.9^(e(e+1)/2) (e = 0, 1, ...),
  7e-5 lr_0 at e = 13 and ~0 for the last 35 of 50 epochs. Its docstring means 0.9 per
  epoch: the paper recipe is `lr_step = 1, lr_gamma = 0.9` (bench.train.lr_schedule). Both are
  DEVIATIONS rows.
Everything random comes from torch generators seeded with `seed`.

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

import math
import pickle
import types
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from bench.data.loading import Batch, batches
from bench.data.types import NUM_BINS, Split
from bench.dir_terms import dir_terms
from bench.errors import UserError
from bench.methods import MethodOptions
from bench.train import (
    TrainSettings,
    endless_batches,
    join,
    lr_schedule,
    make_optimizer,
    optimizer_step,
    pseudo_batch_size,
)

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


# ----------------------------------------------------------------------------- meta-learning


def _slice(batch: Batch, rows: int) -> Batch:
    return Batch(
        batch.x[:rows],
        batch.targets[:rows],
        batch.index[:rows],
        {k: v[:rows] for k, v in batch.extras.items()},
    )


def _to(batch: Batch, device: torch.device) -> Batch:
    return Batch(
        batch.x.to(device, non_blocking=True),
        batch.targets.to(device, non_blocking=True),
        batch.index,
        {k: v.to(device, non_blocking=True) for k, v in batch.extras.items()},
    )


class _TaskBatches(torch.utils.data.Dataset):
    """Task t -> (support batch, query batch) on the CPU: the support set with the training
    transform, the query set with the evaluation one (as the official loaders). A Dataset so
    that a DataLoader's workers prepare the next tasks' images of a file-backed split while
    the model trains on this one (one loader per epoch, not two per task)."""

    def __init__(self, split: Split, tasks: list, seeds: list[int], settings: TrainSettings):
        self.split, self.tasks, self.seeds, self.settings = split, tasks, seeds, settings

    def __len__(self) -> int:
        return len(self.tasks)

    def _one(self, rows: np.ndarray, train: bool, generator: torch.Generator) -> Batch:
        settings = self.settings
        return next(
            batches(
                self.split.subset(rows),
                len(rows),
                train=train,
                img_size=settings.img_size,
                device=torch.device("cpu"),
                generator=generator,
                resize=settings.resize,
                num_workers=0,
                needs=settings.needs,
                max_side=settings.max_side,
            )
        )

    def __getitem__(self, t: int) -> tuple[Batch, Batch]:
        generator = torch.Generator().manual_seed(self.seeds[t])  # order and flips
        support, query = self.tasks[t]
        return self._one(support, True, generator), self._one(query, False, generator)


class MetaLearning:
    """BIAA's first-order bilevel meta-learning (module docstring), one epoch at a time.

    support, query      images of a task's support and query sets (at most)
    inner_steps         optimizer steps on the support batch, then as many on the query batch
    tasks_per_meta      tasks that start from the same meta weights (official task_num)
    meta_step           meta += meta_step * (theta_task - theta_start) after each task
    tasks_per_epoch     None: one task per group (every group once); else this many
    official_meta_update  meta += meta_step * (theta_task - meta) (the official in-place form)
    """

    def __init__(
        self,
        model: nn.Module,
        train: Split,
        pseudo: Split | None,
        opts: MethodOptions,
        settings: TrainSettings,
        seed: int,
        *,
        support: int = 80,
        query: int | None = None,
        inner_steps: int = 5,
        tasks_per_meta: int = 4,
        meta_step: float | None = None,
        tasks_per_epoch: int | None = None,
        official_meta_update: bool = False,
    ):
        query = support // 4 if query is None else query
        if support < 2 or query < 2 or inner_steps < 1 or tasks_per_meta < 1:
            raise UserError(
                "biaa procedure: support and query need >= 2 images, inner_steps and "
                f"tasks_per_meta >= 1 (got {support}, {query}, {inner_steps}, {tasks_per_meta})"
            )
        self.model, self.train, self.opts, self.settings = model, train, opts, settings
        self.support, self.query, self.inner_steps = support, query, inner_steps
        self.tasks_per_meta = tasks_per_meta
        self.meta_step = 1.0 / tasks_per_meta if meta_step is None else meta_step
        self.tasks_per_epoch = tasks_per_epoch
        self.official_meta_update = official_meta_update
        self.generator = torch.Generator().manual_seed(seed)  # tasks, batches, flips (host)
        self.step_generator = torch.Generator(device=settings.device).manual_seed(seed)  # TFA
        self.optimizer = make_optimizer(model, settings)  # shared by every task (official)
        self.schedule = lr_schedule(self.optimizer, settings)
        self.dir_terms = dir_terms(opts, train, model, settings.device)  # LDS, FDS, RankSim
        self.params = [p for p in model.parameters() if p.requires_grad]

        group = train.group if train.group is not None else np.full(len(train), -1)
        order = np.argsort(group, kind="stable")
        grouped = order[group[order] >= 0]
        cuts = np.flatnonzero(np.diff(group[grouped])) + 1
        self.groups = np.split(grouped, cuts) if len(grouped) else []  # fixed groups
        self.ungrouped = order[group[order] < 0]  # dealt into random groups each epoch
        self.pseudo = None
        if pseudo is not None and len(pseudo):
            self.pseudo_split = pseudo
            size = pseudo_batch_size(train, pseudo, support)
            self.pseudo = endless_batches(pseudo, size, settings, self.generator)
        if not self._task_groups():
            raise UserError(
                f"biaa procedure: no group of the training split has enough images for a task "
                f"(support and query of at least 2; {len(train)} images, "
                f"{len(self.groups)} groups)"
            )

    def _split(self, rows: np.ndarray) -> tuple[int, int]:
        """Support and query sizes for a group of len(rows) images."""
        s = min(self.support, math.floor(0.8 * len(rows)))
        return s, min(self.query, len(rows) - s)

    def _task_groups(self) -> list[np.ndarray]:
        """This epoch's groups: the fixed ones and random groups of the ungrouped rows, those
        large enough for a task."""
        groups = list(self.groups)
        if len(self.ungrouped):
            order = torch.randperm(len(self.ungrouped), generator=self.generator).numpy()
            size = self.support + self.query
            shuffled = self.ungrouped[order]
            groups += [shuffled[k : k + size] for k in range(0, len(shuffled), size)]
        return [g for g in groups if min(self._split(g)) >= 2]

    def _tasks(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(support rows, query rows) of this epoch's tasks, in order."""
        groups = self._task_groups()
        count = self.tasks_per_epoch or len(groups)
        order: list[int] = []
        while len(order) < count:
            order += torch.randperm(len(groups), generator=self.generator).tolist()
        tasks = []
        for g in order[:count]:
            rows = groups[g]
            s, q = self._split(rows)
            pick = rows[torch.randperm(len(rows), generator=self.generator).numpy()]
            tasks.append((pick[:s], pick[s : s + q]))
        return tasks

    def _task_batches(self, tasks: list):
        """The tasks' (support, query) batches, in order, prepared by the profile's workers."""
        seeds = torch.randint(2**62, (len(tasks),), generator=self.generator).tolist()
        settings = self.settings
        loader = torch.utils.data.DataLoader(
            _TaskBatches(self.train, tasks, seeds, settings),
            batch_size=None,
            num_workers=settings.num_workers,
            pin_memory=settings.device.type == "cuda",
        )
        for support, query in loader:
            yield _to(support, settings.device), _to(query, settings.device)

    def _step(self, batch: Batch) -> torch.Tensor:
        x, targets, extras, n_u = batch.x, batch.targets, batch.extras, 0
        if self.pseudo is not None:
            n_u = pseudo_batch_size(self.train, self.pseudo_split, len(batch.x))
            pseudo = _slice(next(self.pseudo), n_u)
            (x, targets, extras), n_u = join(batch, pseudo), len(pseudo.x)
        return optimizer_step(self, x, targets, n_u, extras)

    def epoch(self, epoch: int) -> torch.Tensor:
        if self.dir_terms is not None:
            self.dir_terms.start_epoch(epoch)
        total = torch.zeros((), device=self.settings.device)
        steps = 0
        with torch.no_grad():
            meta = [p.detach().clone() for p in self.params]
        for k, task in enumerate(self._task_batches(self._tasks())):
            if k % self.tasks_per_meta == 0:
                start = [m.clone() for m in meta]  # the official temp_model
            with torch.no_grad():
                torch._foreach_copy_(self.params, start)
            for batch in task:  # support, then query
                for _ in range(self.inner_steps):
                    total += self._step(batch)
                    steps += 1
            with torch.no_grad():
                adapted = [p.detach() for p in self.params]
                if self.official_meta_update:
                    torch._foreach_lerp_(meta, adapted, self.meta_step)
                else:
                    moved = torch._foreach_sub(adapted, start)
                    torch._foreach_add_(meta, moved, alpha=self.meta_step)
        with torch.no_grad():
            torch._foreach_copy_(self.params, meta)  # the harness validates the meta weights
        if self.schedule is not None:
            self.schedule.step()
        if self.dir_terms is not None:
            self.dir_terms.end_epoch()
        return total / max(steps, 1)
