"""Toy models for the interpreter tests (imported by conftest and tests)."""

from __future__ import annotations

import torch
from torch import nn


class GapNet(nn.Module):
    """conv-relu-pool-conv-relu, global average pooling, linear: the shape CAM needs."""

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class QuadrantNet(nn.Module):
    """A classifier that only sees the top-left quadrant of its input (the rest is multiplied
    by zero before the first convolution). Positive weights make every visible pixel count for
    class 0."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, size, size)
        mask[..., : size // 2, : size // 2] = 1
        self.register_buffer("mask", mask)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8, 2)
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.fc):
                m.weight.abs_()
            self.fc.weight[1].neg_()

    def forward(self, x):
        x = x * self.mask
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


class PixelSegNet(nn.Module):
    """A per-pixel segmentation model (1x1 convolutions only)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, num_classes, 1))

    def forward(self, x):
        return self.body(x)
