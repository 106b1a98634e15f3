"""``pyseg bench --models``: the torch twin of each network, the cases, the CLI; and the
transposed-convolution layer cases that come from the networks. Small sizes, no timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pyseg.nn as pnn
from pyseg import registry
from pyseg.bench import harness, models

TORCH_MODULES = (torch.nn.ConvTranspose2d, torch.nn.MaxUnpool2d, torch.nn.Upsample)


class _Namespaces(TorchDispatchMode):
    """Records the namespace of every operator that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func.namespace)
        return func(*args, **(kwargs or {}))


def _quick(name: str) -> models.ModelSetup:
    return next(s for s in models.model_setups(quick=True) if s.name == name)


QUICK_NAMES = [s.name for s in models.model_setups(quick=True)]


def test_every_builtin_segmentation_network_has_setups():
    archs = set(registry.list_architectures())
    segmentation = {a for a in archs if "segmentation" in registry.get_architecture(a).tasks}
    assert segmentation <= set(models.BUILTIN_SETUPS)
    assert set(models.BUILTIN_SETUPS) == set(models.QUICK_SETUPS)
    assert {s.arch for s in models.model_setups()} == segmentation
    # The sizes the issue names.
    by_name = {s.name: s for s in models.model_setups()}
    assert by_name["pets-encdec"].input_shape == (4, 3, 200, 200)
    assert by_name["deconvnet"].input_shape == (2, 3, 128, 128)
    assert by_name["unet"].input_shape == (8, 3, 64, 64)
    assert by_name["unet"].kwargs == {"base_channels": 16, "depth": 3}
    with pytest.raises(KeyError, match="no segmentation network named nope"):
        models.model_setups(["nope"])


@pytest.mark.parametrize("name", QUICK_NAMES)
def test_twin_uses_only_torch_modules_and_computes_the_same(name):
    setup = _quick(name)
    torch.manual_seed(0)
    ours = registry.create_model(setup.arch, **setup.kwargs).eval()
    twin = models.torch_twin(ours)
    # Same parameters and buffers under the same keys, ours untouched.
    a, b = ours.state_dict(), twin.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.requires_grad for p in ours.parameters()] == \
        [p.requires_grad for p in twin.parameters()]
    assert not any(type(m).__module__.startswith("pyseg.nn") for m in twin.modules()
                   if type(m) in (pnn.ConvTranspose2d, pnn.MaxUnpool2d, pnn.Upsample,
                                  pnn.DeformConv2d))
    assert any(isinstance(m, pnn.ConvTranspose2d | pnn.MaxUnpool2d | pnn.Upsample
                          | pnn.DeformConv2dPack) for m in ours.modules())
    x = torch.rand(setup.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with _Namespaces() as ours_ops:
            y = ours(x)
        with _Namespaces() as twin_ops:
            y_twin = twin(x)
    # The twin runs no pyseg operator; ours does.
    assert "pyseg" in ours_ops.seen
    assert "pyseg" not in twin_ops.seen
    torch.testing.assert_close(y, y_twin, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["deconvnet", "unet-dcn", "fcn8s"])
def test_twins_agree_to_rounding_in_float64(name):
    # The float32 tolerances of the cases cover rounding only: in float64 the loss and every
    # gradient of the training step agree to ~1e-12.
    setup = _quick(name)
    ours, twin, x, target = models._make_inputs(setup, "nchw")("cpu", torch.float64)
    loss, grads = models._train_step(ours, x, target)
    loss_twin, grads_twin = models._train_step(twin, x, target)
    torch.testing.assert_close(loss, loss_twin, rtol=1e-10, atol=0)
    for g, g_twin in zip(grads, grads_twin, strict=True):
        torch.testing.assert_close(g, g_twin, rtol=1e-8, atol=1e-10 * g_twin.abs().max())


def test_twin_of_single_modules_and_channels_last():
    up = pnn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, bias=False)
    up = up.to(memory_format=torch.channels_last)
    twin = models.torch_twin(up)
    assert type(twin) is torch.nn.ConvTranspose2d and twin.bias is None
    assert twin.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(up(x), twin(x))
    assert type(models.torch_twin(pnn.MaxUnpool2d(2))) is torch.nn.MaxUnpool2d
    assert type(models.torch_twin(pnn.Upsample(scale_factor=2, mode="bilinear"))) is \
        torch.nn.Upsample


@pytest.mark.parametrize("name", ["unet-dcn", "deconvnet"])
def test_model_cases_agree_through_the_harness(name):
    # All four cases (NCHW/NHWC x forward/training step) pass the agreement check; the
    # timing itself is not asserted on.
    cases = models.model_cases([_quick(name)])
    assert [c.name.split("/")[2:] for c in cases] == \
        [["nchw", "fwd"], ["nchw", "train"], ["nhwc", "fwd"], ["nhwc", "train"]]
    results = [harness.run_case(c, threads=1, min_run_time=0.001, memory=False) for c in cases]
    for r in results:
        assert r.status == "ok", r.reason
        assert r.max_rel_diff <= models.MODEL_RTOL[r.name.split("/")[-1]]
    table = models.model_table(results)
    assert name in table and "fwd NHWC" in table and "train NCHW" in table


def test_training_step_returns_loss_and_every_trainable_gradient():
    setup = _quick("fcn8s")  # its final upsampling is frozen
    ours, _, x, target = models._make_inputs(setup, "nchw")("cpu", torch.float32)
    loss, grads = models._train_step(ours, x, target)
    trainable = [p for p in ours.parameters() if p.requires_grad]
    assert len(grads) == len(trainable) < len(list(ours.parameters()))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_refuses_a_twin_that_disagrees():
    setup = _quick("unet")
    case = models.model_cases([setup])[0]

    def broken(device, dtype):
        ours, twin, x, target = case.make_inputs(device, dtype)
        with torch.no_grad():
            twin.head.bias.add_(1.0)
        return ours, twin, x, target

    from dataclasses import replace

    r = harness.run_case(replace(case, make_inputs=broken), threads=1, min_run_time=0.001,
                         memory=False)
    assert r.status == "refused" and "disagrees" in r.reason


def test_cli_models_quick(tmp_path):
    out = tmp_path / "models.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pyseg", "bench", "--models", "--quick", "segnet",
         "--no-memory", "--min-run-time", "0.001", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ), check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = proc.stdout.splitlines()[0]
    assert header.startswith("# ") and "capability torch" in header
    assert "network, input" in proc.stdout and "segnet" in proc.stdout
    data = json.loads(out.read_text())
    assert data["settings"]["models"] is True
    names = {r["name"] for r in data["results"]}
    assert len(names) == 4  # 2 layouts x 2 passes
    assert all(r["status"] == "ok" for r in data["results"])
    assert data["machine"]["torch_cpu_capability"]


def test_cli_models_list_and_unknown_network():
    from pyseg.cli import main

    assert main(["bench", "--models", "--list", "pets-encdec"]) == 0
    assert main(["bench", "--models", "no-such-net"]) != 0


def test_conv_transpose_layer_cases_match_the_networks():
    # The layer-shape cases of `pyseg bench conv_transpose2d` are the transposed
    # convolutions the built-in networks make at their benchmark input sizes.
    from pyseg_plugins import benchmarks

    setups = [s for group in models.BUILTIN_SETUPS.values() for s in group]
    traced = models.conv_transpose_layers(setups)
    listed = {layer: list(users) for layer, users in benchmarks.ZOO_CONV_TRANSPOSE_LAYERS}
    assert listed == traced
    cases = [registry.get_benchmark(n) for n in registry.list_benchmarks()
             if n.startswith("conv_transpose2d/zoo")]
    assert len(cases) == 4 * len(traced)  # NCHW and channels_last, fwd and fwd + bwd each


@pytest.mark.parametrize("backward", [False, True])
def test_a_layer_case_runs(backward):
    # The smallest case of each kind, to keep it fast.
    from pyseg_plugins import benchmarks

    layer, _ = min(benchmarks.ZOO_CONV_TRANSPOSE_LAYERS,
                   key=lambda item: torch.Size(item[0].input_shape).numel())
    case = registry.get_benchmark(benchmarks.zoo_case_name(layer) + ("+bwd" if backward else ""))
    r = harness.run_case(case, threads=1, min_run_time=0.001, memory=False)
    assert r.status == "ok", r.reason
