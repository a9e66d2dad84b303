"""BIAA's training procedure (Zhu et al., IEEE TCYB 2020, BLG-PIAA; `baselines/biaa.py` is the
model): first-order bilevel meta-learning over tasks, as the official `train_model`
(zhuhancheng/BLG-PIAA `train_meta_model.py`). models.toml names it as BIAA's `procedure`; it is
a `bench.train.loop.Procedure`, so ELTA's modules and the DIR methods plug into its steps
unchanged.

- A task is a group of images: `Split.group` (AVA's challenge, TAD66K's theme, PARA's session;
  the embedded benchmark's scene category). The official tasks are FLICKR-AES workers. A
  dataset without groups (AADB: `group` None), and the rows of a dataset whose group id is -1,
  are dealt each epoch into random groups of `support + query` images.
- From a group of n images, a support set of s images and a disjoint query set of q, by the
  official rule (`load_data`: s = 80 if n >= 110 else int(0.8 n); the rest split into query
  batches of int(s / 4), the first of which is used) with the config's `support` S and `query`
  Q in place of its constants, read as 80 = S, 0.8 = S / (S + Q), 4 = S / Q and 110 = S + 3Q/2
  (the support set and one and a half query sets):
      s = S if n >= S + 3Q/2 else floor(n S / (S + Q)),   q = floor(s Q / S).
  At S = 80, Q = 20 this is the official rule; q always fits in the n - s images left. Below
  the threshold s = floor(0.8 n) even where that exceeds S, as officially (n = 101..109:
  s = 80..87). Not reproduced: the official split goes through sklearn's
  `train_test_split(train_size=s / n)`, which takes floor((s / n) * n) in floating point, one
  image fewer for some n (79 at n = 154, 303, 308, ...). Groups with s < 2 or q < 2 are skipped
  (BatchNorm in training mode needs two rows).
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
  7e-5 lr_0 at e = 13 and ~0 for the last 35 of 50 epochs. The paper recipe runs it as the
  code does (`schedule = "compound"`, `lr_gamma = 0.9`, bench.train.lr_schedule); what its
  docstring means, 0.9 once per epoch, is the `step_decay` variant. Both are DEVIATIONS rows.
Everything random comes from torch generators seeded with `seed`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.data.loading import Batch, batches, data_loader
from bench.data.types import Split
from bench.train.dir_terms import dir_terms
from bench.train.loop import (
    TrainSettings,
    endless_batches,
    join,
    lr_schedule,
    make_optimizer,
    optimizer_step,
    pseudo_batch_size,
)
from bench.train.methods import MethodOptions
from iaa_common import UserError


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
        self.updates = 0
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
        """Support and query sizes for a group of len(rows) images: the official rule with the
        config's sizes (module docstring), in integer arithmetic."""
        n, support, query = len(rows), self.support, self.query
        s = support if 2 * n >= 2 * support + 3 * query else n * support // (support + query)
        return s, s * query // support

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
        loader = data_loader(
            _TaskBatches(self.train, tasks, seeds, settings), None, settings.num_workers,
            settings.device,
        )  # fmt: skip
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
            if self.settings.capped(self.updates):
                break
            if k % self.tasks_per_meta == 0:
                start = [m.clone() for m in meta]  # the official temp_model
            with torch.no_grad():
                torch._foreach_copy_(self.params, start)
            for batch in task:  # support, then query
                for _ in range(self.inner_steps if not self.settings.capped(self.updates) else 0):
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
