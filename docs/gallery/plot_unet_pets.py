"""
A U-Net trained for a few seconds on synthetic pets
===================================================

The built-in ``synthetic-pets`` dataset draws cats and dogs procedurally, with trimaps in
the Oxford-IIIT Pets convention (0 the animal, 1 background, 2 the contour band), so it
needs no download. A small U-Net from the registry learns it for a few seconds here
(``pyseg train`` does the same at full size: see the user guide); its predictions are
drawn next to the true trimaps in the PASCAL VOC colors of :mod:`pyseg.palette`.
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import pyseg
from pyseg.data.synthetic import SEGMENTATION_CLASSES, SyntheticPets
from pyseg.engine.metrics import segmentation_metrics
from pyseg.palette import colorize_mask

torch.manual_seed(0)
# Tensors this small gain nothing from more threads, and on a busy machine each parallel
# region waits for the scheduler: one thread is several times faster here.
torch.set_num_threads(1)


def load(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of a split as an image batch and a trimap batch."""
    data = SyntheticPets(split=split, img_size=32, length=n)
    images, trimaps = zip(*(data[i] for i in range(n)))
    return torch.stack(images), torch.stack(trimaps)


train_x, train_y = load("train", 256)
val_x, val_y = load("val", 32)

model = pyseg.create_model("unet", num_classes=3, base_channels=8, depth=2)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
losses = []
for step in range(150):
    batch = torch.randint(0, len(train_x), (8,))
    loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())

model.eval()
with torch.no_grad():
    pred = model(val_x).argmax(1)
scores = segmentation_metrics(pred, val_y, SEGMENTATION_CLASSES)
# The baseline: every pixel called background, the largest class.
baseline = segmentation_metrics(torch.ones_like(val_y), val_y, SEGMENTATION_CLASSES)
print(f"loss {losses[0]:.3f} -> {sum(losses[-10:]) / 10:.3f}; validation mIoU "
      f"{scores['miou']:.3f} (all background: {baseline['miou']:.3f}), IoU {scores['iou']}")

# %%
# What the picture shows is learned, not guessed: the loss fell, and on held-out images the
# network beats calling everything background, finding the animals (foreground IoU).

assert sum(losses[-10:]) / 10 < 0.8 * losses[0]
assert scores["miou"] > baseline["miou"] + 0.1
assert scores["iou"]["foreground"] > 0.3

# %%
# Held-out images, their true trimaps and the predictions, in the VOC colors: black the
# animal (class 0), dark red the background (1), green the contour band (2).

fig, axes = plt.subplots(3, 6, figsize=(11, 5.6))
for j in range(6):
    axes[0, j].imshow(val_x[j].permute(1, 2, 0).numpy())
    axes[1, j].imshow(colorize_mask(val_y[j].numpy()))
    axes[2, j].imshow(colorize_mask(pred[j].numpy()))
for ax, label in zip(axes[:, 0], ("image", "trimap", "prediction")):
    ax.set_ylabel(label)
for ax in axes.flatten():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"U-Net, 150 steps: validation mIoU {scores['miou']:.2f}", fontsize=10)
fig.tight_layout()
plt.show()
