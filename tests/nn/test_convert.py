"""pyseg.nn.convert on small networks: what is replaced, what is kept, what is reported.

Reference: a deep copy of the network before the conversion, run by torch. float64 outputs
and gradients agree to 1e-12 of their scale (same sampling points and weights, another
summation order)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import pyseg
from pyseg.nn.convert import (
    ConvertedConvTranspose2d,
    ConvertedDeformConv2d,
    ConvertedMaxUnpool2d,
    ConvertedUpsample,
)
from tests.nn.opcount import OpCount, tensors_close


class MyUpsample(nn.Upsample):
    """A subclass: its forward may do anything, so it is left alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        self.deconv = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                         groups=2, dilation=1)
        self.offset = nn.Conv2d(6, 18, 3, padding=1)
        self.deform = torchvision.ops.DeformConv2d(6, 4, 3, padding=1)
        self.head = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.UpsamplingBilinear2d(size=(40, 36)),
            nn.UpsamplingNearest2d(scale_factor=0.5),
            nn.Upsample(size=(13, 11), mode="bicubic"),
        )
        self.norm = nn.BatchNorm2d(4)
        self.mine = MyUpsample(scale_factor=2)
        self.deconv3d = nn.ConvTranspose3d(1, 1, 2)
        self.tri = nn.Upsample(scale_factor=2, mode="trilinear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, idx = self.pool(x)
        x = self.unpool(y, idx, output_size=x.shape)
        x = self.deconv(x).relu()
        x = self.deform(x, self.offset(x))
        x = self.norm(self.head(x))
        v = self.tri(self.deconv3d(x[:, :1, None, :4, :4]))
        return self.mine(x).mean() + v.mean() + x.square().mean()


def _net() -> Net:
    torch.manual_seed(0)
    net = Net().double()
    with torch.no_grad():  # offsets of a few pixels, so the deformation matters
        net.offset.weight.mul_(20)
    return net


def test_report_names_every_candidate():
    net, report = pyseg.nn.convert(_net(), report=True)
    assert [(e.name, e.kind, e.converted_to) for e in report.converted] == [
        ("unpool", "MaxUnpool2d", "ConvertedMaxUnpool2d"),
        ("deconv", "ConvTranspose2d", "ConvertedConvTranspose2d"),
        ("deform", "DeformConv2d", "ConvertedDeformConv2d"),
        ("head.0", "Upsample", "ConvertedUpsample"),
        ("head.1", "UpsamplingBilinear2d", "ConvertedUpsample"),
        ("head.2", "UpsamplingNearest2d", "ConvertedUpsample"),
        ("head.3", "Upsample", "ConvertedUpsample"),
        ("deconv3d", "ConvTranspose3d", "ConvertedConvTranspose3d"),
        ("tri", "Upsample", "ConvertedUpsample"),
    ]
    assert [(e.name, e.reason) for e in report.not_converted] == [
        ("mine", "a subclass of torch.nn.modules.upsampling.Upsample: its forward may differ"),
    ]
    assert isinstance(net.deconv, pyseg.nn.ConvTranspose2d)
    assert isinstance(net.deconv, nn.ConvTranspose2d)  # isinstance checks of user code hold
    assert isinstance(net.unpool, pyseg.nn.MaxUnpool2d)
    assert isinstance(net.deform, pyseg.nn.DeformConv2d)
    assert all(isinstance(m, pyseg.nn.Upsample) for m in net.head)
    assert type(net.mine) is MyUpsample and type(net.tri) is ConvertedUpsample
    assert isinstance(net.deconv3d, pyseg.nn.ConvTranspose3d)
    assert "converted      deconv: ConvTranspose2d -> ConvertedConvTranspose2d" in str(report)
    assert "not converted  mine: MyUpsample (a subclass" in str(report)
    # Converting again finds nothing new.
    _, again = pyseg.nn.convert(net, report=True)
    assert not again.converted and len(again.not_converted) == 1


def test_same_parameters_buffers_state_dict_and_outputs():
    original = _net()
    reference = copy.deepcopy(original)
    params = dict(original.named_parameters())
    buffers = dict(original.named_buffers())
    keys = list(original.state_dict())
    net = pyseg.nn.convert(original)
    assert net is original  # in place, as convert_sync_batchnorm
    assert list(net.state_dict()) == keys
    assert all(p is params[n] for n, p in net.named_parameters())  # the very objects
    assert all(b is buffers[n] for n, b in net.named_buffers())
    # The two classes load each other's checkpoints.
    reference.load_state_dict(net.state_dict())
    net.load_state_dict(reference.state_dict())

    x = torch.randn(2, 4, 10, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                    requires_grad=True)
    for train in (False, True):
        net.train(train)
        reference.train(train)
        with OpCount() as count:
            ours = net(x)
            our_grads = torch.autograd.grad(ours, [x, *net.parameters()])
        ref = reference(x)
        ref_grads = torch.autograd.grad(ref, [x, *reference.parameters()])
        tensors_close(ours, ref, 1e-12)
        for a, b in zip(our_grads, ref_grads):
            tensors_close(a, b, 1e-12, atol=1e-12 * max(g.abs().max().item() for g in ref_grads))
        assert count.pyseg() == {
            "pyseg::max_unpool2d": 1, "pyseg::max_unpool2d_backward": 1,
            "pyseg::conv_transpose2d": 1, "pyseg::conv_transpose2d_backward": 1,
            "pyseg::deform_conv2d": 1, "pyseg::_deform_conv2d_backward": 1,
            "pyseg::upsample2d": 4, "pyseg::upsample2d_backward": 4,
            "pyseg::conv_transpose3d": 1, "pyseg::conv_transpose3d_backward": 1,
            "pyseg::upsample": 1, "pyseg::upsample_backward": 1}
        # What stays with torch: MyUpsample's nearest upsampling.
        assert count.counts["aten::upsample_nearest2d"] == 1
        assert count.counts["aten::upsample_nearest2d_backward"] == 1
        assert count.counts["aten::upsample_trilinear3d"] == 0
    # BatchNorm's running statistics moved the same way.
    tensors_close(net.norm.running_mean, reference.norm.running_mean, 1e-12)


class NdNet(nn.Module):
    """One module of each 1-D / 3-D kind and nn.Upsample in every mode."""

    def __init__(self) -> None:
        super().__init__()
        self.pool1 = nn.MaxPool1d(2, return_indices=True)
        self.unpool1 = nn.MaxUnpool1d(2)
        self.deconv1 = nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.linear = nn.Upsample(scale_factor=1.5, mode="linear", align_corners=True)
        self.exact1 = nn.Upsample(size=9, mode="nearest-exact")
        self.area1 = nn.Upsample(size=5, mode="area")
        self.pool3 = nn.MaxPool3d(2, return_indices=True)
        self.unpool3 = nn.MaxUnpool3d(2)
        self.deconv3 = nn.ConvTranspose3d(3, 2, (2, 3, 3), stride=(2, 1, 2), padding=(0, 1, 1),
                                          groups=1, dilation=(1, 2, 1))
        self.tri = nn.Upsample(scale_factor=(1.5, 2, 0.5), mode="trilinear")
        self.nearest3 = nn.Upsample(size=(3, 4, 5))
        self.area3 = nn.Upsample(size=(2, 3, 2), mode="area")
        self.exact2 = nn.Upsample(scale_factor=1.3, mode="nearest-exact")
        self.area2 = nn.Upsample(size=(3, 5), mode="area")

    def forward(self, x1: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        y, idx = self.pool1(x1)
        a = self.deconv1(self.unpool1(y, idx, output_size=x1.shape[-1:]))
        a = self.area1(self.exact1(self.linear(a)))
        y, idx = self.pool3(x3)
        b = self.deconv3(self.unpool3(y, idx, output_size=x3.shape[-3:]))
        b = self.area3(self.nearest3(self.tri(b)))
        c = self.area2(self.exact2(x3[:, :, 0]))
        return a.square().mean() + b.square().mean() + c.square().mean()


def test_nd_modules_converted_and_match_torch():
    torch.manual_seed(0)
    net = NdNet().double()
    reference = copy.deepcopy(net)
    net, report = pyseg.nn.convert(net, report=True)
    assert not report.not_converted
    kinds = {e.name: e.converted_to for e in report.converted}
    assert kinds == {
        "unpool1": "ConvertedMaxUnpool1d", "deconv1": "ConvertedConvTranspose1d",
        "linear": "ConvertedUpsample", "exact1": "ConvertedUpsample", "area1": "ConvertedUpsample",
        "unpool3": "ConvertedMaxUnpool3d", "deconv3": "ConvertedConvTranspose3d",
        "tri": "ConvertedUpsample", "nearest3": "ConvertedUpsample", "area3": "ConvertedUpsample",
        "exact2": "ConvertedUpsample", "area2": "ConvertedUpsample"}
    assert list(net.state_dict()) == list(reference.state_dict())
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(2, 3, 10, dtype=torch.float64, generator=gen, requires_grad=True)
    x3 = torch.randn(2, 3, 4, 6, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    with OpCount() as count, pyseg.kernels() as mode:
        ours = net(x1, x3)
        our_grads = torch.autograd.grad(ours, [x1, x3, *net.parameters()])
    ref = reference(x1, x3)
    ref_grads = torch.autograd.grad(ref, [x1, x3, *reference.parameters()])
    tensors_close(ours, ref, 1e-12)
    for a, b in zip(our_grads, ref_grads):
        tensors_close(a, b, 1e-12)
    assert mode.stats.to_pyseg == {"max_unpool1d": 1, "conv_transpose1d": 1, "interpolate": 8,
                                   "max_unpool3d": 1, "conv_transpose3d": 1}
    assert not mode.stats.to_torch
    assert count.pyseg() == {
        "pyseg::max_unpool2d": 1, "pyseg::max_unpool2d_backward": 1,
        "pyseg::conv_transpose2d": 1, "pyseg::conv_transpose2d_backward": 1,
        "pyseg::max_unpool3d": 1, "pyseg::max_unpool3d_backward": 1,
        "pyseg::conv_transpose3d": 1, "pyseg::conv_transpose3d_backward": 1,
        "pyseg::upsample": 8, "pyseg::upsample_backward": 8}
    assert not [k for k in count.counts if k.startswith(
        ("aten::upsample", "aten::_upsample", "aten::max_unpool", "aten::convolution",
         "aten::adaptive_avg_pool", "aten::_adaptive_avg_pool"))], count.counts


def test_optimizer_built_before_conversion_still_trains_the_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(2, 3, 2, stride=2), nn.Upsample(scale_factor=2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = net[0].weight.detach().clone()
    net = pyseg.nn.convert(net)
    net(torch.randn(1, 2, 3, 3)).sum().backward()
    opt.step()
    assert not torch.equal(net[0].weight, before)


def test_hooks_and_training_flag_are_kept():
    net = nn.Sequential(nn.ConvTranspose2d(2, 3, 2)).eval()
    seen = []
    handle = net[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    net = pyseg.nn.convert(net)
    assert not net[0].training
    net(torch.randn(1, 2, 3, 3))
    assert seen == [torch.Size([1, 3, 4, 4])]
    handle.remove()  # the handle of the original module removes the hook of the new one
    net(torch.randn(1, 2, 3, 3))
    assert len(seen) == 1


def test_converted_modules_fall_back_to_torch_for_inputs_pyseg_lacks():
    up = pyseg.nn.convert(nn.Upsample(scale_factor=2))  # the model itself is replaced
    assert type(up) is ConvertedUpsample
    for x in (torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4),
              torch.arange(8, dtype=torch.uint8).view(1, 1, 2, 2, 2)):
        with OpCount() as count:
            out = up(x)
        assert torch.equal(out, F.interpolate(x, scale_factor=2))
        assert not count.pyseg()
    for x in (torch.randn(1, 2, 3), torch.randn(1, 2, 3, 3, 3)):  # every rank: pyseg's
        with OpCount() as count:
            out = up(x)
        assert torch.equal(out, F.interpolate(x, scale_factor=2))  # nearest: a copy
        assert count.pyseg() == {"pyseg::upsample": 1}
    deconv = nn.ConvTranspose2d(2, 2, 3)
    ref = copy.deepcopy(deconv)
    deconv = pyseg.nn.convert(deconv)
    assert type(deconv) is ConvertedConvTranspose2d
    with torch.device("meta"):  # no pyseg kernel on meta: torch's shape function
        assert pyseg.nn.convert(nn.ConvTranspose2d(2, 2, 3))(torch.empty(1, 2, 4, 4)).shape \
            == ref(torch.empty(1, 2, 4, 4, device="meta")).shape
    unpool = pyseg.nn.convert(nn.MaxUnpool2d(2))
    assert type(unpool) is ConvertedMaxUnpool2d
    deform = pyseg.nn.convert(torchvision.ops.DeformConv2d(2, 2, 3))
    assert type(deform) is ConvertedDeformConv2d


def test_ops_choose_what_is_converted():
    net = nn.Sequential(nn.ConvTranspose2d(2, 2, 2), nn.Upsample(scale_factor=2))
    net, report = pyseg.nn.convert(net, ops=["interpolate"], report=True)
    assert type(net[0]) is nn.ConvTranspose2d and type(net[1]) is ConvertedUpsample
    assert [(e.name, e.reason) for e in report.not_converted] == [
        ("0", "conv_transpose2d not in ops")]


def test_bad_arguments():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        pyseg.nn.convert(lambda x: x)
    with pytest.raises(ValueError, match="ops: unknown op 'deconv'"):
        pyseg.nn.convert(nn.Identity(), ops=["deconv"])
    _, report = pyseg.nn.convert(nn.Identity(), report=True)
    assert str(report) == "no module of a kind pyseg can replace"


def test_converted_modules_compile():
    """torch.compile traces the converted modules (no mode needed): pyseg's ops in the
    graph, torch's values."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(2, 3, 2, stride=2), nn.Upsample(scale_factor=2))
    reference = copy.deepcopy(net)
    net = pyseg.nn.convert(net)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward  # the captured graph, run eagerly: no compiler time

    torch._dynamo.reset()
    x = torch.randn(1, 2, 3, 3)
    out = torch.compile(net, backend=backend, fullgraph=True)(x)
    tensors_close(out, reference(x), 1e-5)
    targets = {str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"}
    assert {"pyseg.conv_transpose2d", "pyseg.upsample2d"} <= targets, targets
