"""
Where a deformable convolution samples
======================================

A deformable convolution (Dai et al. 2017) adds a learned offset to each of its kernel's
sampling positions, predicted from the input by a small convolution. Here a
:class:`pyseg.nn.DeformConv2dPack` (3x3, offsets initialised to zero) is trained for a
moment to output the 3x3 average of its input shifted by 3 pixels to the right. Its
weights are held at the 3x3 average, so only the offsets learn: no 3x3 kernel reaches 3
pixels away, and the only way to fit is to move every sampling point 3 pixels to the left,
where the values come from. Drawn over the image, the points show it (the idea of Figure 6
of the paper).
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import pyseg

torch.manual_seed(0)
# Tensors this small gain nothing from more threads, and on a busy machine each parallel
# region waits for the scheduler: one thread is several times faster here.
torch.set_num_threads(1)
SHIFT = 3


def smooth_images(n: int, size: int = 32) -> torch.Tensor:
    """Random blobs: white noise blurred by a Gaussian (sigma 2), scaled to unit spread."""
    noise = torch.randn(n, 1, size + 16, size + 16)
    g = torch.exp(-0.5 * (torch.arange(-6.0, 7.0) / 2.0) ** 2)
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, 13, 13)
    blurred = F.conv2d(noise, kernel)[..., 2:-2, 2:-2]
    return blurred / blurred.std()


images = smooth_images(16)
average = torch.full((1, 1, 3, 3), 1 / 9)
# The target: each output pixel is the 3x3 average around the input pixel SHIFT to its left.
targets = F.conv2d(images, average, padding=1).roll(SHIFT, dims=-1)[..., 8:-8, 8:-8]

layer = pyseg.nn.DeformConv2dPack(1, 1, 3, padding=1)
with torch.no_grad():  # the weights stay the 3x3 average: only conv_offset trains
    layer.weight.copy_(average)
    layer.bias.zero_()
layer.weight.requires_grad_(False)
layer.bias.requires_grad_(False)
# The offsets' bias finds the shift; a slow rate for the input-dependent part keeps it from
# chasing look-alike pixels elsewhere in the noise.
optimizer = torch.optim.Adam([{"params": [layer.conv_offset.bias], "lr": 0.1},
                              {"params": [layer.conv_offset.weight], "lr": 0.002}])

losses = []
for step in range(100):
    loss = F.mse_loss(layer(images)[..., 8:-8, 8:-8], targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"loss {losses[0]:.3f} -> {losses[-1]:.4f}")

# %%
# The offsets: ``conv_offset`` predicts ``(dy, dx)`` for each of the 9 taps at every pixel.

image = images[:1]
with torch.no_grad():
    offset = layer.conv_offset(image)[0].view(9, 2, 32, 32)
dx = offset[:, 1, 8:-8, 8:-8]
print(f"mean horizontal offset {dx.mean():.2f} px (want {-SHIFT}), spread {dx.std():.2f}")

# What the picture shows: the loss fell by far, and the sampling points moved about SHIFT
# pixels to the left (a 3x3 kernel without offsets reaches only 1 pixel).
assert losses[-1] < 0.05 * losses[0]
assert abs(dx.mean().item() + SHIFT) < 0.5
# The taps have equal weights, so one tap may sit short of the shift while another
# overshoots: what must hold is where they sample on average, at (almost) every pixel.
centre = dx.mean(0)
assert (centre + SHIFT).abs().lt(0.5).float().mean() > 0.9

# %%
# The sampling points of three output pixels: the regular 3x3 grid (white) and where the
# trained layer samples (red), over the input.

fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
axes[0].imshow(image[0, 0].numpy(), cmap="gray")
grid = torch.stack(torch.meshgrid(torch.arange(-1.0, 2.0), torch.arange(-1.0, 2.0),
                                  indexing="ij"), -1).view(9, 2)
for y, x in ((12, 14), (20, 22), (16, 18)):
    regular = grid + torch.tensor([y, x])
    moved = regular + offset[:, :, y, x]
    axes[0].scatter(regular[:, 1], regular[:, 0], s=14, c="white", edgecolors="k")
    axes[0].scatter(moved[:, 1], moved[:, 0], s=14, c="red")
    axes[0].plot([x], [y], "x", color="yellow")
axes[0].set_title("sampling points: regular (white), learned (red)", fontsize=9)
axes[0].axis("off")
axes[1].plot(losses)
axes[1].set_yscale("log")
axes[1].set_xlabel("step")
axes[1].set_title("training loss (the 3x3 average, shifted 3 px)", fontsize=9)
fig.tight_layout()
plt.show()
