"""The surface every registered model has (`IAAModel`); `create_model` checks each model it
builds against it (`lacks`). No torch import here: the registry is read without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    import torch

Output = Literal["logits", "distribution", "score"]


class IAAModel(Protocol):
    """What the harness and ELTA's modules use of a model, the same for every model:

        forward_features(x, **extras) -> (B, D) pooled feature (TFA, FLSA, FDS and RankSim act
                                         on it)
        forward_head(z)               -> (B, 10) or (B, 1), as `output` says
        feature_dim                   -> D
        needs                         -> the per-image inputs beyond pixels it takes as `extras`
                                         ("aspect", "size": bench.data.loading)
        output                        -> what the head returns (optional, "logits" when absent;
                                         bench.train.losses reads it):
                                         "logits"        (B, 10) logits over the rating bins
                                         "distribution"  (B, 10) the distribution itself, raw
                                         "score"         (B, 1) the score / 10

    and `model(x, **extras)`, nn.Module's call of `forward`, is forward_head(forward_features).
    `output` is optional: `lacks` does not require it and the harness reads
    getattr(model, "output", "logits"); a model whose head returns anything else must set it.
    """

    feature_dim: int
    needs: tuple[str, ...]
    output: Output = "logits"

    def forward_features(self, x: torch.Tensor, **extras: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, z: torch.Tensor) -> torch.Tensor: ...

    def forward(self, x: torch.Tensor, **extras: torch.Tensor) -> torch.Tensor: ...


OPTIONAL = ("output",)  # members with a default: a model may leave them out
MEMBERS = (
    *(name for name, value in vars(IAAModel).items() if callable(value) and name[0] != "_"),
    *(name for name in IAAModel.__annotations__ if name not in OPTIONAL),
)


def lacks(model: object) -> list[str]:
    """The required members of `IAAModel` that `model` does not have (a `forward` that is
    nn.Module's unimplemented placeholder counts as missing)."""
    from torch import nn

    def has(name: str) -> bool:
        if name == "forward" and getattr(type(model), "forward", None) is nn.Module.forward:
            return False
        return hasattr(model, name)

    return [name for name in MEMBERS if not has(name)]
