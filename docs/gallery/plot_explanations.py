"""
Every explanation method on one image
=====================================

All of pyseg's interpreters on the same image and the same model, side by side, with the
faithfulness numbers of :mod:`pyseg.interpret.metrics` under each map (what
:func:`~pyseg.interpret.metrics.faithfulness` computes, here with fewer steps to stay fast).

The model is constructed so that the right answer is known: a small convolutional
classifier (convolution, ReLU, max pooling, convolution, ReLU, global average pooling,
linear: the shape CAM needs) whose first layer detects red and blue, and whose class 0 is
"red" and class 1 "blue". The image holds a red square and a smaller blue one on grey noise; a
map for class 0 should light up the red square and leave the blue one dark. (Eigen-CAM is
class-agnostic: it shows the layer's dominant pattern, whatever the class. ACoL needs a
network with ACoL's two-branch head and is left out.)
"""

import matplotlib.pyplot as plt
import torch
from torch import nn

import pyseg
from pyseg.interpret import metrics
from pyseg.interpret.pointing import pointing_hits

torch.manual_seed(0)
# Tensors this small gain nothing from more threads, and on a busy machine each parallel
# region waits for the scheduler: one thread is several times faster here.
torch.set_num_threads(1)


class ColorNet(nn.Module):
    """Class 0: how much red there is; class 1: how much blue."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            first, second = self.features[0], self.features[3]
            first.weight.zero_()
            first.bias.fill_(-0.2)
            # Channels 0, 1: red minus the other colors; 2, 3: blue minus the others (3x3 mean).
            for ch, color in ((0, 0), (1, 0), (2, 2), (3, 2)):
                first.weight[ch] = -0.5 / 9
                first.weight[ch, color] = 1.0 / 9
            second.weight.zero_()
            second.bias.zero_()
            for ch in range(4):
                second.weight[ch, ch] = 1.0 / 9
            self.fc.weight.copy_(torch.tensor([[20.0, 20.0, -10.0, -10.0], [-10.0, -10.0, 20.0, 20.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


model = ColorNet().eval()
image = 0.35 + 0.1 * torch.rand(1, 3, 32, 32)
red = torch.zeros(1, 32, 32, dtype=torch.bool)
red[:, 6:16, 4:14] = True
blue = torch.zeros_like(red)
blue[:, 20:28, 20:28] = True
image[:, :, red[0]] = torch.tensor([0.9, 0.1, 0.1])[None, :, None]
image[:, :, blue[0]] = torch.tensor([0.1, 0.1, 0.9])[None, :, None]
assert model(image).argmax(1).item() == 0  # more red than blue

# %%
# The maps for class 0 (the sampling methods with fewer samples than their defaults, to stay
# fast; each is seeded).

options = {"rise": {"num_samples": 400}, "hide-and-seek": {"num_samples": 128}}
methods = [m for m in pyseg.list_interpreters(task="classification") if m != "acol"]
maps, scores = {}, {}


def faithfulness(saliency: torch.Tensor) -> dict[str, float]:
    """Deletion and insertion areas (16 steps), ROAD at 3 percentiles, the pointing game."""
    return {
        "deletion": metrics.deletion(model, image, saliency, 0, steps=16)[1].item(),
        "insertion": metrics.insertion(model, image, saliency, 0, steps=16)[1].item(),
        "road": metrics.road(model, image, saliency, 0, percentiles=(25, 50, 75))["road"].item(),
        "pointing": pointing_hits(saliency, red).item(),
    }


for name in methods:
    maps[name] = pyseg.get_interpreter(name)(model, image, target=0, **options.get(name, {}))
    scores[name] = faithfulness(maps[name])
    assert maps[name].shape == (1, 32, 32)
    assert 0.0 <= maps[name].min() and maps[name].max() <= 1.0 + 1e-6

# %%
# What the pictures show: every class-specific method is brighter on the red square than on
# the blue one, and its highest point lies on the red square (the pointing game).

for name in methods:
    if name == "eigencam":
        continue
    m = maps[name][0]
    assert m[red[0]].mean() > m[blue[0]].mean() + 0.2, name
    assert scores[name]["pointing"], name
print(f"{'method':20s} {'deletion':>9s} {'insertion':>9s} {'ROAD':>7s} {'pointing':>8s}")
for name in methods:
    s = scores[name]
    print(f"{name:20s} {s['deletion']:9.3f} {s['insertion']:9.3f} {s['road']:7.3f} "
          f"{s['pointing']!s:>8s}")

# %%
# On a network this simple most of the CAM family agree exactly: each channel of the last
# layer is one color detector and nothing else, so weighting the channels by gradients,
# activations or score drops picks the same two channels. The methods that perturb the
# input (RISE, hide-and-seek, Score-CAM) judge regions by how the score changes when they
# are hidden or kept, so their maps and numbers differ.
#
# Side by side. Under each map: the areas under the deletion curve (lower is better) and
# the insertion curve (higher is better), and ROAD (higher is better).

cols = 5
rows = (len(methods) + 1 + cols - 1) // cols
fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows))
axes = axes.flatten()
axes[0].imshow(image[0].permute(1, 2, 0).numpy())
axes[0].set_title("image (class 0: red)", fontsize=9)
for ax, name in zip(axes[1:], methods):
    ax.imshow(image[0].permute(1, 2, 0).numpy())
    ax.imshow(maps[name][0].detach().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    s = scores[name]
    ax.set_title(name, fontsize=9)
    ax.set_xlabel(f"del {s['deletion']:.2f}  ins {s['insertion']:.2f}  ROAD {s['road']:.2f}",
                  fontsize=7)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
for ax in axes[len(methods) + 1:]:
    ax.axis("off")
fig.tight_layout()
plt.show()
