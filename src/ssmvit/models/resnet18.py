"""ResNet-18 for small images, as MedMNIST v2 trained it at 28x28: the field's convolutional baseline.

He et al.'s BasicBlock network, [2, 2, 2, 2] blocks at widths w, 2w, 4w, 8w
(w = 64), with MedMNIST v2's small-image stem: a 3x3 stride-1 convolution
and no max-pool, so a 28x28 image keeps 28x28 feature maps in the first
stage. Global average pooling and a linear head. Here it trains with the
study's budget (AdamW, cosine schedule, the study's epochs and batch size),
not MedMNIST v2's 100 epochs of Adam.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# The model registry's entry (ssmvit.models): how the config names it, what it reads, its settings.
NAME, LABEL, ORDER, INPUT_LAYOUT = "resnet18", "ResNet-18", 2, "image"
DESCRIPTION = "MedMNIST v2's ResNet-18 (3x3 stem, no max-pool), trained with the study's budget"
SETTINGS = {  # JSON-schema properties of models.resnet18, with their defaults
    "lr": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1.0e-3},
    "width": {"type": "integer", "minimum": 1, "default": 64, "description": "channels of the first stage"},
}


def build(n_channels: int, n_classes: int, image_size: int, **settings) -> nn.Module:
    return ResNet18(n_channels, n_classes, **settings)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:  # a projection where the shape changes
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """Input (B, C, H, W) float, output (B, n_classes) logits."""

    def __init__(self, n_channels: int, n_classes: int, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(n_channels, width, 3, stride=1, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages, c_in = [], width
        for i, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stages(self.stem(x))).flatten(1))
