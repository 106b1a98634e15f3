"""Accuracy of the deployment paths, per built-in architecture (the small configurations of
tests/deploy/models.py, random weights, random inputs):

* bf16: max |autocast(cpu, bfloat16) - float32| / max |float32| of the output, for pyseg's
  network and for the same network built from torch.nn modules (its "twin");
* onnx: max |onnxruntime - pyseg| of the output of the ONNX export (float32), at batch 3
  for a model exported at batch 2 with a dynamic batch dimension.

Run from the repository root: python benchmarks/deploy_accuracy.py
"""

from __future__ import annotations

import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pyseg.bench.report import cpu_model
from tests.deploy.models import CONFIGS, build, torch_twin


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def main() -> None:
    import onnxruntime

    print(f"CPU: {cpu_model()}, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}, load average {os.getloadavg()[0]:.1f}")
    print("| architecture | bf16 rel. error, pyseg | bf16 rel. error, torch.nn twin | "
          "max abs ONNX - pyseg |")
    print("|---|---|---|---|")
    for key in CONFIGS:
        model, size = build(key)
        model.eval()
        twin = torch_twin(model).eval()
        x = torch.rand(3, 3, size, size)
        with torch.no_grad():
            ref = model(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                ours, theirs = model(x), twin(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (torch.rand(2, 3, size, size),), dynamo=True,
                                        verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
        session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        onnx_diff = (torch.from_numpy(got) - ref).abs().max().item()
        print(f"| {key} | {rel_error(ours, ref):.2e} | {rel_error(theirs, ref):.2e} | "
              f"{onnx_diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
