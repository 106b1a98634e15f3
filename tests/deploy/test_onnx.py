"""ONNX export: every op translates to standard ONNX operators that onnxruntime runs with
pyseg's results, and every built-in architecture exports with ``torch.onnx.export(model,
(x,), dynamo=True)`` (no extra arguments) and runs with other batch sizes."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pyseg
from tests.deploy.models import CONFIGS, build

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ops = pyseg.ops


def export(model: nn.Module, args: tuple, dynamic_batch: bool = False):
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        dynamic_shapes = tuple({0: batch} if a.dim() >= 3 else None for a in args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.eval(), args, dynamo=True, verbose=False,
                                    dynamic_shapes=dynamic_shapes)
    return program.model_proto


def run(proto, *args) -> list[torch.Tensor]:
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)}
    return [torch.from_numpy(o) for o in session.run(None, feeds)]


def node_types(proto) -> set[str]:
    return {n.op_type for n in proto.graph.node}


class Calls(nn.Module):
    """A module whose forward returns ``fn(*inputs)`` for each function in ``fns``."""

    def __init__(self, *fns):
        super().__init__()
        self.fns = fns

    def forward(self, *inputs):
        return tuple(fn(*inputs) for fn in self.fns)


def check(module: nn.Module, *inputs: torch.Tensor, atol: float = 1e-5) -> set[str]:
    proto = export(module, inputs)
    with torch.no_grad():
        expected = module(*inputs)
    got = run(proto, *inputs)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.shape == e.shape, i
        torch.testing.assert_close(g, e, rtol=1e-5, atol=atol, msg=f"output {i}")
    return node_types(proto)


def test_no_pyseg_op_survives_translation():
    model, size = build("unet-deform")
    proto = export(model, (torch.rand(1, 3, size, size),))
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node), \
        {n.domain for n in proto.graph.node}
    assert {"ConvTranspose", "DeformConv"} <= node_types(proto)


def test_conv_transpose2d():
    x = torch.randn(2, 4, 5, 6)
    w = torch.randn(4, 3, 3, 3)
    b = torch.randn(6)
    types = check(Calls(
        lambda x: ops.conv_transpose2d(x, w),
        lambda x: ops.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
        lambda x: ops.conv_transpose2d(x, w, b, stride=(2, 3),
                                       padding=(0, 2), groups=2, dilation=(2, 1)),
    ), x)
    assert "ConvTranspose" in types


def test_max_unpool2d():
    x = torch.randn(2, 3, 9, 11)
    types = check(Calls(
        lambda x: ops.max_unpool2d(*F.max_pool2d(x[..., :8, :10], 2, return_indices=True), 2),
        lambda x: ops.max_unpool2d(*F.max_pool2d(x, 3, 2, 1, return_indices=True), 3, 2, 1,
                                   output_size=x.shape[-2:]),
        lambda x: ops.max_unpool2d(*F.max_pool2d(x[0], 2, return_indices=True), 2,
                                   output_size=x.shape[-2:]),
    ), x)
    assert "MaxUnpool" in types


INTERPOLATIONS = [
    {"scale_factor": 2, "mode": "nearest"},
    {"size": (13, 7), "mode": "nearest"},
    {"scale_factor": 2, "mode": "bilinear"},
    {"scale_factor": 2, "mode": "bilinear", "align_corners": True},
    {"scale_factor": 1.5, "mode": "bilinear"},
    {"size": (13, 7), "mode": "bilinear"},
    {"size": (1, 1), "mode": "bilinear"},
    {"size": (4, 3), "mode": "bilinear", "align_corners": True},
    {"scale_factor": 2, "mode": "bicubic"},
    {"scale_factor": 2, "mode": "bicubic", "align_corners": True},
    {"size": (13, 7), "mode": "bicubic"},
    {"scale_factor": 0.5, "mode": "bicubic"},
]


def test_interpolate():
    x = torch.randn(2, 3, 6, 9)
    fns = [lambda x, kw=kw: ops.interpolate(x, **kw) for kw in INTERPOLATIONS]
    types = check(Calls(*fns), x)
    assert types <= {"Resize", "Constant"}


# pyseg::upsample: every mode on 3-D, 4-D and 5-D input, antialias included (Resize).
INTERPOLATIONS_ND = [
    ((2, 3, 11), {"scale_factor": 2.5, "mode": "linear"}),
    ((2, 3, 11), {"size": 17, "mode": "linear", "align_corners": True}),
    ((2, 3, 11), {"size": 1, "mode": "linear"}),
    ((2, 3, 11), {"scale_factor": 2, "mode": "nearest"}),
    ((2, 3, 11), {"size": 7, "mode": "nearest"}),
    ((2, 3, 11), {"size": 7, "mode": "nearest-exact"}),
    ((2, 3, 11), {"scale_factor": 1.7, "mode": "nearest-exact"}),
    ((2, 3, 7, 9), {"scale_factor": 1.7, "mode": "nearest-exact"}),
    ((2, 3, 7, 9), {"size": (3, 4), "mode": "nearest-exact"}),
    ((2, 3, 7, 9), {"size": (3, 4), "mode": "bilinear", "antialias": True}),
    ((2, 3, 7, 9), {"scale_factor": 0.4, "mode": "bilinear", "antialias": True}),
    ((2, 3, 7, 9), {"size": (13, 20), "mode": "bilinear", "antialias": True}),
    ((2, 3, 7, 9), {"size": (3, 4), "mode": "bicubic", "antialias": True}),
    ((2, 3, 7, 9), {"scale_factor": 0.6, "mode": "bicubic", "antialias": True}),
    ((2, 3, 7, 9), {"scale_factor": 1.5, "mode": "bicubic", "antialias": True}),
    ((2, 3, 4, 5, 6), {"scale_factor": 2, "mode": "trilinear"}),
    ((2, 3, 4, 5, 6), {"scale_factor": (1.5, 2, 0.5), "mode": "trilinear"}),
    ((2, 3, 4, 5, 6), {"size": (3, 7, 5), "mode": "trilinear", "align_corners": True}),
    ((2, 3, 4, 5, 6), {"size": (6, 7, 8), "mode": "nearest"}),
    ((2, 3, 4, 5, 6), {"scale_factor": 1.5, "mode": "nearest-exact"}),
]


@pytest.mark.parametrize("rank", [3, 4, 5])
def test_interpolate_nd(rank):
    calls = [(shape, kw) for shape, kw in INTERPOLATIONS_ND if len(shape) == rank]
    x = torch.randn(*calls[0][0])
    proto = export(Calls(*[lambda x, kw=kw: ops.interpolate(x, **kw) for _, kw in calls]), (x,))
    assert node_types(proto) <= {"Resize", "Constant"}
    got = run(proto, x)
    assert len(got) == len(calls)
    for g, (_, kw) in zip(got, calls):  # against torch's own function
        torch.testing.assert_close(g, F.interpolate(x, **kw), rtol=1e-5, atol=1e-5,
                                   msg=f"{kw}")


@pytest.mark.parametrize("shape,size", [((2, 3, 11), 4), ((2, 3, 7, 9), (3, 4)),
                                        ((2, 3, 8, 6), (4, 3)), ((2, 3, 4, 5, 6), (2, 3, 4)),
                                        ((2, 3, 4, 5, 6), (3, 3, 4))])
def test_interpolate_area(shape, size):
    """Adaptive average pooling, as torch exports it (5-D: two 2-D poolings, which torch
    cannot export itself); compared with torch's F.interpolate."""
    x = torch.randn(*shape)
    proto = export(Calls(lambda x: ops.interpolate(x, size=size, mode="area")), (x,))
    (got,) = run(proto, x)
    torch.testing.assert_close(got, F.interpolate(x, size=size, mode="area"), rtol=1e-5,
                               atol=1e-6)
    assert "Resize" not in node_types(proto)


def test_antialias_with_align_corners_does_not_export():
    from pyseg.ops._onnx import TRANSLATIONS

    x = torch.randn(1, 2, 7, 9)
    with pytest.raises(RuntimeError, match="no ONNX translation: ONNX Resize has no coordinate"):
        TRANSLATIONS["upsample"](x, [3, 4], "bilinear", True, True, None)
    # torch.onnx retries in strict mode, where pyseg's op stays untranslated: the export fails.
    with pytest.raises(torch.onnx.OnnxExporterError, match="pyseg.upsample"):
        export(Calls(lambda x: ops.interpolate(x, size=(3, 4), mode="bicubic", antialias=True,
                                               align_corners=True)), (x,))


def test_bed_of_nails():
    check(Calls(lambda x: ops.bed_of_nails(x, 2), lambda x: ops.bed_of_nails(x, (3, 1))),
          torch.randn(2, 3, 4, 5))


def test_deform_conv2d():
    x = torch.randn(2, 4, 8, 8)
    w = torch.randn(6, 2, 3, 3)  # groups 2
    b = torch.randn(6)
    # Offsets large enough to push samples outside the image, over 2 offset groups.
    offset = torch.randn(2, 2 * 2 * 9, 4, 4) * 3
    mask = torch.rand(2, 2 * 9, 4, 4)
    types = check(Calls(
        lambda x, o, m: ops.deform_conv2d(x, o, w, b, stride=2, padding=1, dilation=1),
        lambda x, o, m: ops.deform_conv2d(x, o, w, None, stride=2, padding=1, mask=m),
        lambda x, o, m: ops.deform_conv2d(x, o[:, :18], w[:3].repeat(1, 2, 1, 1), stride=2,
                                          padding=(2, 1), dilation=(2, 1)),
    ), x, offset, mask, atol=1e-4)
    assert "DeformConv" in types


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_architecture_exports_and_runs_in_onnxruntime(key):
    model, size = build(key)
    model.eval()
    proto = export(model, (torch.rand(2, 3, size, size),), dynamic_batch=True)
    for batch in (1, 3):
        x = torch.rand(batch, 3, size, size)
        with torch.no_grad():
            expected = model(x)
        (got,) = run(proto, x)
        assert got.shape == expected.shape
        assert expected.std() > 0  # a network that outputs constants would prove nothing
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_torch_export_still_keeps_pyseg_ops():
    model, size = build("segnet")
    program = torch.export.export(model.eval(), (torch.rand(2, 3, size, size),))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any(t.startswith("pyseg.") for t in targets), targets
