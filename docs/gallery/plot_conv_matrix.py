"""
Convolution as a matrix C, transposed convolution as Cᵀ
=======================================================

A convolution is linear, so for one image it is a matrix product: flatten the input ``x``
and the output ``y`` and there is a matrix ``C`` with ``y = C x``. Each row of ``C`` is one
output pixel; its non-zero entries are the kernel taps that land on the input.

The transposed convolution with the same weight is ``Cᵀ``: it sends each output pixel back
to the input pixels that produced it, which is why it is also called the gradient of the
convolution with respect to its input, and why it upsamples when the convolution had a
stride. :func:`pyseg.ops.conv2d_matrix` builds ``C`` from the tap positions.
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import pyseg

# %%
# A 3x3 kernel with stride 2 and padding 1 on a 4x4 input gives a 2x2 output, so ``C`` is
# 4 x 16. The kernel holds 1..9 so that each entry of ``C`` says which tap it is.

kernel = torch.arange(1.0, 10.0, dtype=torch.float64).view(1, 1, 3, 3)
C = pyseg.ops.conv2d_matrix(kernel, (4, 4), stride=2, padding=1)
print("C has shape", tuple(C.shape))

x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
y = F.conv2d(x, kernel, stride=2, padding=1)
# C x is the convolution (torch's own conv2d is the reference).
assert torch.allclose(C @ x.flatten(), y.flatten())

# Cᵀ y is the transposed convolution, both torch's and pyseg's kernel.
g = torch.randn(1, 1, 2, 2, dtype=torch.float64)
up_torch = F.conv_transpose2d(g, kernel, stride=2, padding=1, output_padding=1)
up_pyseg = pyseg.ops.conv_transpose2d(g, kernel, stride=2, padding=1, output_padding=1)
assert up_pyseg.shape == (1, 1, 4, 4)
assert torch.allclose((C.T @ g.flatten()).view(4, 4), up_torch[0, 0])
assert torch.allclose(up_pyseg, up_torch)

# ... and Cᵀ is the gradient of the convolution with respect to its input.
x.requires_grad_(True)
(F.conv2d(x, kernel, stride=2, padding=1) * g).sum().backward()
assert torch.allclose(x.grad.flatten(), C.T @ g.flatten())

# %%
# The picture: ``C`` (4 rows, one per output pixel) and ``Cᵀ`` (16 rows, one per input
# pixel). Row 0 of ``C`` is the top-left output pixel: padding cuts its kernel to the taps
# 5, 6, 8, 9. Every column of ``C`` (row of ``Cᵀ``) with several entries is an input pixel
# that several outputs share.

fig, axes = plt.subplots(1, 2, figsize=(9, 5), gridspec_kw={"width_ratios": [16, 4]})
for ax, m, title in ((axes[0], C, "C: conv2d (4 x 16)"), (axes[1], C.T, "Cᵀ: conv_transpose2d\n(16 x 4)")):
    ax.imshow(m.numpy(), cmap="Blues", vmin=0, vmax=10)
    for (r, c), v in zip(torch.nonzero(m).tolist(), m[m != 0].tolist()):
        ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(m.shape[0]))
fig.tight_layout()
plt.show()

# %%
# The top-left output reads input pixels (0,0), (0,1), (1,0), (1,1) with taps 5, 6, 8, 9:
assert C[0].nonzero().flatten().tolist() == [0, 1, 4, 5]
assert C[0, [0, 1, 4, 5]].tolist() == [5.0, 6.0, 8.0, 9.0]
