"""Smoke test of an installed pyseg (a wheel in a fresh environment): import, `pyseg info`,
the built-in plugins, and one operator per family on the CPU against torch.

Usage: python .ci/smoke_test.py [--expect-prefix DIR]   (DIR: where pyseg must be installed)
Run it from outside the source tree, so that `import pyseg` cannot find the checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import torch
import torch.nn.functional as F


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect-prefix", default=None)
    args = parser.parse_args()

    import pyseg

    where = os.path.realpath(pyseg.__file__)
    print(f"pyseg {pyseg.__version__} from {where}")
    if args.expect_prefix and not where.startswith(os.path.realpath(args.expect_prefix)):
        sys.exit(f"pyseg was imported from {where}, not from {args.expect_prefix}")

    command = shutil.which("pyseg", path=os.path.dirname(sys.executable))
    if command is None:
        sys.exit("the pyseg command is not installed next to this python")
    facts = json.loads(subprocess.run([command, "info", "--json"], capture_output=True,
                                      text=True, check=True).stdout)
    print(f"pyseg info: torch {facts['torch_version']} (built with {facts['torch_built_with']}),"
          f" cuda_compiled={facts['cuda_compiled']}, {facts['compiler']}")

    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 10)
    pooled, idx = F.max_pool2d(x, 2, return_indices=True)
    weight = torch.randn(4, 3, 3, 3)
    conv_weight = torch.randn(5, 4, 3, 3)
    nails = torch.zeros(2, 4, 16, 20)
    nails[..., ::2, ::2] = x
    checks = {
        "max_unpool2d": (pyseg.ops.max_unpool2d(pooled, idx, 2), F.max_unpool2d(pooled, idx, 2)),
        "conv_transpose2d": (pyseg.ops.conv_transpose2d(x, weight, stride=2, padding=1),
                             F.conv_transpose2d(x, weight, stride=2, padding=1)),
        "interpolate": (pyseg.ops.interpolate(x, scale_factor=2, mode="bicubic"),
                        F.interpolate(x, scale_factor=2, mode="bicubic")),
        "bed_of_nails": (pyseg.ops.bed_of_nails(x, 2), nails),
        # Zero offsets: deformable convolution is a plain convolution.
        "deform_conv2d": (pyseg.ops.deform_conv2d(x, torch.zeros(2, 18, 6, 8), conv_weight),
                          F.conv2d(x, conv_weight)),
    }
    for name, (ours, reference) in checks.items():
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
        print(f"{name}: ok")

    names = set(pyseg.list_architectures())
    model = pyseg.create_model("unet", num_classes=3, base_channels=4, depth=2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    print(f"architectures: {len(names)} ({', '.join(sorted(names))}); unet forward ok")
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
