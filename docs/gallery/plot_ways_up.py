"""
The ways up: nearest, bed of nails, max unpooling, bilinear, bicubic
====================================================================

A decoder has to go back up in resolution. The classic choices, on one small image,
upsampled 2x:

* **nearest**: each value copied into its 2x2 block;
* **bed of nails**: each value at the top-left of its block, zeros elsewhere;
* **max unpooling**: each value put back where the max pooling found it (the encoder's
  pooling indices), zeros elsewhere, as in SegNet and DeconvNet;
* **bilinear** and **bicubic** interpolation (bicubic overshoots at edges).
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import pyseg

# %%
# An 8x8 image with a bright diagonal bar and a gradient, max-pooled to 4x4; the pooling
# indices remember where each maximum was.

yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
image = (xx / 7 + 2.0 * ((yy - xx).abs() <= 1)).view(1, 1, 8, 8)
small, indices = F.max_pool2d(image, 2, return_indices=True)

ways = {
    "nearest": pyseg.ops.interpolate(small, scale_factor=2, mode="nearest"),
    "bed of nails": pyseg.ops.bed_of_nails(small, 2),
    "max unpooling": pyseg.ops.max_unpool2d(small, indices, 2),
    "bilinear": pyseg.ops.interpolate(small, scale_factor=2, mode="bilinear"),
    "bicubic": pyseg.ops.interpolate(small, scale_factor=2, mode="bicubic"),
}

# %%
# What each picture shows, checked against a definition or against torch:

s = small[0, 0]
# nearest: every 2x2 block holds its value.
assert torch.equal(ways["nearest"][0, 0], s.repeat_interleave(2, 0).repeat_interleave(2, 1))
# bed of nails: the value at the top-left of each block, zeros elsewhere.
nails = ways["bed of nails"][0, 0]
assert torch.equal(nails[::2, ::2], s)
assert nails.count_nonzero() == s.count_nonzero()
# max unpooling: the values sit exactly at the pooled positions (argmax of each block).
unpooled = ways["max unpooling"][0, 0].flatten()
assert torch.equal(unpooled[indices.flatten()], s.flatten())
assert unpooled.count_nonzero() == s.count_nonzero()
assert torch.equal(ways["max unpooling"], F.max_unpool2d(small, indices, 2))
# interpolation: torch's results; bicubic overshoots above the largest input, bilinear not.
for mode in ("bilinear", "bicubic"):
    assert torch.allclose(ways[mode], F.interpolate(small, scale_factor=2, mode=mode), atol=1e-6)
assert ways["bilinear"].max() <= small.max() + 1e-6
assert ways["bicubic"].max() > small.max()

# %%
# Side by side (same color scale; the input at full resolution first).

panels = {"input 8x8": image, "max-pooled 4x4": small, **ways}
fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
lo, hi = float(ways["bicubic"].min()), float(ways["bicubic"].max())
for ax, (title, t) in zip(axes, panels.items()):
    ax.imshow(t[0, 0].numpy(), cmap="magma", vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()
