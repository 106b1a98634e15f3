"""Small models for engine tests (importable as ``tinynet:TinyNet`` with this folder on
``sys.path``), so the engine is tested without depending on registered architectures."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A Pets-style encoder-decoder: strided 3x3 convs down, transposed convs up."""

    def __init__(self, num_classes: int = 3, in_channels: int = 3, width: int = 8,
                 depth: int = 2, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(depth):
            w = width * 2 ** i
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(w))
            layers += [nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU()]
            c = w
        for i in reversed(range(depth)):
            w = width * 2 ** i
            layers += [nn.ConvTranspose2d(c, w, 3, padding=1), nn.ReLU(),
                       nn.ConvTranspose2d(w, w, 3, stride=2, padding=1, output_padding=1),
                       nn.ReLU()]
            c = w
        layers.append(nn.Conv2d(c, num_classes, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyClassifier(nn.Module):
    def __init__(self, num_classes: int = 2, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
