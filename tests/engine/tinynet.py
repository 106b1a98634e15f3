"""Small models for engine tests (importable as ``tinynet:TinyNet`` with this folder on
``sys.path``), so the engine is tested without depending on registered architectures."""

from __future__ import annotations

import os
import signal
from pathlib import Path

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


class TinyUNet(nn.Module):
    """A small U-Net (skip connections make the thin contour class learnable quickly)."""

    def __init__(self, num_classes: int = 3, in_channels: int = 3, width: int = 16,
                 depth: int = 3) -> None:
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

        self.down = nn.ModuleList()
        c = in_channels
        chans = []
        for i in range(depth):
            self.down.append(block(c, width * 2 ** i))
            c = width * 2 ** i
            chans.append(c)
        self.mid = block(c, c * 2)
        c *= 2
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for skip in reversed(chans):
            self.ups.append(nn.ConvTranspose2d(c, skip, 2, stride=2))
            self.up_blocks.append(block(2 * skip, skip))
            c = skip
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.mid(x)
        for up, blk, s in zip(self.ups, self.up_blocks, reversed(skips)):
            x = blk(torch.cat([up(x), s], 1))
        return self.head(x)


class KilledOnce(TinyNet):
    """TinyNet whose process kills itself (SIGKILL, as an out-of-memory killer or a lost
    machine would) at its ``PYSEG_TEST_KILL_AT=rank:n``-th training forward, on torchrun's
    first attempt only (``TORCHELASTIC_RESTART_COUNT`` 0). Without the variable it is TinyNet."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            rank, _, n = os.environ.get("PYSEG_TEST_KILL_AT", "-1:0").partition(":")
            if (os.environ.get("RANK") == rank and self.calls == int(n)
                    and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0"):
                Path(os.environ["PYSEG_TEST_KILL_MARKER"]).write_text(f"{self.calls}\n")
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)
