"""torchvision's ResNet of BasicBlocks with configurable stage widths and depths, under
torchvision's module names, so that torchvision (and Places365) ResNet-18 files load key for key.
Used by BIAA (`resnet_layer`, its 1000-way ImageNet fc kept) and TANet (`res365_last`, the
frozen scene classifier).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1


class ResNet(nn.Module):
    """conv 7x7/2 - BN - ReLU - maxpool 3x3/2 - four stages of BasicBlocks (the first block of
    a stage strides by 2 from the second stage on, with a 1x1 conv + BN shortcut where the shape
    changes) - global average pool - fc to `num_classes`. widths (64, 128, 256, 512), depths
    (2, 2, 2, 2): resnet18. Initialised as torchvision's: Kaiming-normal convs (fan_out),
    BatchNorm weight 1, bias 0, the fc at PyTorch's default."""

    def __init__(self, widths: Sequence[int], depths: Sequence[int], num_classes: int):
        super().__init__()
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError(
                f"a ResNet has 4 stages (layer1..layer4): got widths {list(widths)}, "
                f"depths {list(depths)}"
            )
        self.num_classes = num_classes
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
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
