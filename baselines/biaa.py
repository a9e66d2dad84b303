"""BIAA (Zhu et al., IEEE TCYB 2020, "Personalized Image Aesthetics Assessment via Meta-Learning
With Bilevel Gradient Optimization", BLG-PIAA) as an IAA model.

Official code: zhuhancheng/BLG-PIAA `train_meta_model.py` (`Net`, `BaselineModel1`,
`train_model`, `exp_lr_scheduler`, `load_data`) and `finetune_model_newtask.py`.

Model (`Net`): a torchvision ResNet-18 *keeping its 1000-way ImageNet fc* (`resnet_layer`:
baselines/resnet.py, shared with TANet), then the MLP `BaselineModel1` (`net`): FC(1000, 1024)-
BN-PReLU-Dropout(.5)-FC(1024, 512)-BN-PReLU-Dropout(.5)-FC(512, 1)-Sigmoid, trained with MSE
on rating / 5 (FLICKR-AES ratings 1..5). Module names follow the official ones
(`resnet_layer.*` in torchvision's layout, `net.{fc1,bn1,relu1,fc2,bn2,relu2,fc3}`), so the
official files map one to one. PReLU has one shared slope, as in the official code.

Head (config key `head`, the model's `output`: bench/train/losses.py):
- "score": the official FC(512, 1) + Sigmoid, the score / 10 on the harness's 10-point scale,
  trained with MSE on the score / 10 (the official target is rating / 5 on FLICKR-AES's 1..5
  scale: the same sigmoid range). The default at `paper`: 13,242,923 parameters (BASELINES.md
  13.24M).
- "logits": FC(512, 10), logits over the rating bins 1..10 (the harness takes the softmax:
  EMD for distributions, MSE on the expected score for scalar labels). The `dist_head` variant
  at paper, so that APDS, which sharpens a softmax, attaches; the head of the `cpu` and `smoke`
  configs and the default when a config names no head. 13,247,540 parameters at paper.
Both heads create their layers in the same order, so a seed gives the same weights up to fc3.

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
  (`resnet_layer.*`, `net.*`). The pickle is read without running it (baselines/weights.py:
  only tensor-rebuild functions and plain containers are real; every `torch.nn` / torchvision
  / `__main__` class becomes an inert stub that stores its state, and anything else is
  refused). With the "score" head the prior loads whole. A file whose fc3 does not fit the
  head (the prior's FC(512, 1) in the "logits" head, a 10-bin fc3 in the "score" head) loads
  all but fc3, which stays at its random init (a warning says so): the ResNet and the MLP's
  hidden layers (fc1, bn1, relu1, fc2, bn2, relu2, with BN running statistics).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from baselines.resnet import ResNet
from baselines.weights import load_checked, read_state_dict
from iaa_common import NUM_BINS, UserError

HEAD_OUTPUTS = {"logits": NUM_BINS, "score": 1}  # head -> outputs of fc3

# ----------------------------------------------------------------------------- the model


class AestheticsMLP(nn.Module):
    """The official `BaselineModel1`: FC-BN-PReLU-Dropout twice, then FC(512, 1) + Sigmoid
    (head "score") or FC(512, 10) (head "logits"). Module names are the official ones."""

    def __init__(self, in_features: int, hidden: Sequence[int], dropout: float, head: str):
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
        self.fc3 = nn.Linear(second, HEAD_OUTPUTS[head])
        self.sig = nn.Sigmoid() if head == "score" else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self.drop1(self.relu1(self.bn1(self.fc1(z))))
        z = self.drop2(self.relu2(self.bn2(self.fc2(z))))
        return self.sig(self.fc3(z))


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
        head: str = "logits",
    ):
        super().__init__()
        if head not in HEAD_OUTPUTS:
            raise ValueError(f"BIAA head must be one of {', '.join(HEAD_OUTPUTS)}, not {head!r}")
        self.img_size = img_size
        self.output = head
        self.resnet_layer = ResNet(widths, depths, resnet_out)
        self.net = AestheticsMLP(resnet_out, hidden, dropout, head)
        self.feature_dim = resnet_out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, resnet_out): the ResNet's output, its fc kept (1000-d at paper): where the
        official `Net` hands over to BIAA's MLP head (module docstring)."""
        return self.resnet_layer(x)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 1) sigmoid score / 10 (head "score") or (B, 10) logits (head "logits")."""
        return self.net(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------- weights

WEIGHT_PARTS = ("auto", "backbone")


def official_to_model(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official keys -> this model's: a torchvision ImageNet ResNet (`conv1.*`, ..., `fc.*`)
    goes under `resnet_layer.`; `resnet_layer.*` / `net.*` (the official `Net`) stay."""
    if any(key.startswith(("resnet_layer.", "net.")) for key in state):
        return dict(state)
    return {f"resnet_layer.{key}": value for key, value in state.items()}


def load_weights(model: BIAA, part: str, path: Path) -> None:
    """Load a weights file (module docstring): the ResNet alone, or (part `auto`) a whole BIAA,
    whose fc3 stays at its init with a warning when it does not fit the model's head."""
    state = official_to_model(read_state_dict(path))
    whole = any(key.startswith("net.") for key in state)
    if whole and part != "auto":
        raise UserError(f"{path}: a whole BIAA model, not a backbone (give it as --weights biaa=)")
    head = state.get("net.fc3.weight")
    other_head = whole and head is not None and head.shape != model.net.fc3.weight.shape
    if other_head:
        state = {k: v for k, v in state.items() if not k.startswith("net.fc3.")}

    def required(key: str) -> bool:
        if not whole:
            return key.startswith("resnet_layer.")
        return not (other_head and key.startswith("net.fc3."))

    what = f"a BIAA {'model' if whole else 'ResNet backbone'} file for this config"
    load_checked(model, state, path, what, required)
    if other_head:
        warnings.warn(
            f"{path}: its head net.fc3 {tuple(head.shape)} does not fit head '{model.output}' "
            f"{tuple(model.net.fc3.weight.shape)}; net.fc3 stays at its random init (the ResNet "
            "and the MLP's hidden layers loaded)",
            stacklevel=2,
        )


def build(weights: dict[str, Path] | None = None, **config) -> BIAA:
    """The registry's entry point (configs in models.toml)."""
    model = BIAA(**config)
    for part, path in (weights or {}).items():
        load_weights(model, part, path)
    return model
