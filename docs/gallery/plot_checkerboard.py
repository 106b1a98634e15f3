"""
Checkerboard artifacts
======================

A transposed convolution whose stride does not divide its kernel size paints some output
pixels more often than others: with kernel 3 and stride 2, along one axis the even outputs
receive two kernel taps and the odd ones one, so in 2-D the pixels get 1, 2 or 4
contributions, a checkerboard (Odena, Dumoulin and Olah, "Deconvolution and Checkerboard
Artifacts", Distill 2016). A kernel of 4 with stride 2 overlaps evenly; resizing first and
then convolving (their fix) overlaps evenly whatever the kernel.

The constructed example: a constant input and an all-ones kernel, so every output pixel is
exactly the number of contributions it receives.
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import pyseg

x = torch.ones(1, 1, 8, 8, dtype=torch.float64)

deconv3 = pyseg.ops.conv_transpose2d(x, torch.ones(1, 1, 3, 3, dtype=torch.float64), stride=2)
deconv4 = pyseg.ops.conv_transpose2d(x, torch.ones(1, 1, 4, 4, dtype=torch.float64), stride=2)
resized = pyseg.ops.interpolate(x, scale_factor=2, mode="nearest")
resize_conv = F.conv2d(resized, torch.ones(1, 1, 3, 3, dtype=torch.float64) / 9, padding=1)

# %%
# The counts, from the definition: output ``o = 2 i + k`` for input ``i`` and tap ``k``, so
# ``o`` is reached by the taps ``k`` with ``o - k`` even and ``0 <= (o - k) / 2 < 8``.


def contributions(size_out: int, kernel: int, stride: int = 2, size_in: int = 8) -> torch.Tensor:
    """How many (input, tap) pairs land on each output position along one axis."""
    count = torch.zeros(size_out, dtype=torch.float64)
    for i in range(size_in):
        for k in range(kernel):
            count[stride * i + k] += 1
    return count


for out, kernel in ((deconv3, 3), (deconv4, 4)):
    c = contributions(out.shape[-1], kernel)
    assert torch.equal(out[0, 0], torch.outer(c, c))
    assert torch.equal(out, F.conv_transpose2d(x, torch.ones(1, 1, kernel, kernel,
                                                               dtype=torch.float64), stride=2))

inner3 = deconv3[0, 0, 2:-2, 2:-2]
assert set(inner3.unique().tolist()) == {1.0, 2.0, 4.0}       # the checkerboard
assert deconv4[0, 0, 2:-2, 2:-2].unique().tolist() == [4.0]    # kernel 4, stride 2: even
assert torch.allclose(resize_conv[0, 0, 1:-1, 1:-1], torch.ones(14, 14, dtype=torch.float64))

# %%
# Side by side (the border rows and columns, where fewer inputs reach, are cut off).

fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
for ax, (t, title) in zip(axes, (
    (inner3, "transposed conv\nkernel 3, stride 2: 1, 2, 4"),
    (deconv4[0, 0, 2:-2, 2:-2], "transposed conv\nkernel 4, stride 2: all 4"),
    (resize_conv[0, 0, 1:-1, 1:-1], "nearest resize, then 3x3 mean\nall 1 (9 taps / 9)"),
)):
    im = ax.imshow(t.numpy(), cmap="viridis", vmin=0, vmax=4)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.colorbar(im, ax=axes, shrink=0.8, label="contributions (value)")
plt.show()

# %%
# A trained network can learn weights that hide the unevenness, but nothing in the layer
# forces it to; the resize-then-convolve layer is even by construction, which is what
# ``pyseg.nn.Upsample`` followed by a convolution gives a decoder.
