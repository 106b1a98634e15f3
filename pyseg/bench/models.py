"""Model-level benchmarks: each built-in segmentation network with pyseg's modules against the
very same network with torch's modules (``pyseg bench --models``).

The torch twin of a network is a deep copy in which every ``pyseg.nn`` module is replaced by
its torch / torchvision counterpart holding the same parameters (:func:`torch_twin`): the
``state_dict`` keys are the same by design, so the two networks compute the same function and
differ only in the kernels. Per network, layout (NCHW, or NHWC = channels_last model and
input) and pass there is one case:

* ``fwd``: inference, ``model.eval()`` under ``torch.no_grad()``;
* ``train``: a training step without the optimizer (whose cost is the same on both sides):
  ``model.train()``, forward, cross-entropy against a fixed target, and the gradients of
  every trainable parameter (``torch.autograd.grad``, so nothing accumulates between calls).
  The step reseeds torch's generator first, so both networks draw the same dropout masks.

The harness checks the outputs (forward) or the loss and every gradient (training step) of the
two networks against each other before timing, as for the op cases.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyseg.bench.harness import CaseResult
from pyseg.registry import BenchmarkCase

__all__ = ["MODEL_LABEL", "ModelSetup", "model_cases", "model_setups", "model_table",
           "torch_twin"]

MODEL_LABEL = "models"
LAYOUTS = ("nchw", "nhwc")
PASSES = ("fwd", "train")
# Deep networks in float32: the outputs, loss and gradients of the two twins differ by
# summation order through ~30 layers, not by wrong indices (in float64 they agree to ~1e-12,
# see tests/bench/test_models.py). The training step gets more room: batch norm over two
# values (DeconvNet's 1x1 fc layers at batch 2) amplifies rounding. Beyond these, the check
# judges both sides against a float64 run of the same step (harness.check_agreement):
# DeconvNet at (2,3,128,128) has gradients 1-12% apart between the float32 twins, each
# 4-26% away from float64.
MODEL_RTOL = {"fwd": 1e-3, "train": 1e-2}


@dataclass(frozen=True)
class ModelSetup:
    """One network to benchmark: ``arch`` (a registered architecture), the factory keyword
    arguments (``kwargs``), and the input shape ``input_shape`` ``(N, C, H, W)``; ``name`` is what the table
    shows, ``num_classes`` the number of output classes it is built for.

    Example::

        >>> from pyseg.bench.models import ModelSetup
        >>> ModelSetup("unet-small", "unet", (2, 3, 16, 16), {"depth": 2}).description
        'unet[depth=2] (2,3,16,16)'
    """

    name: str
    arch: str
    input_shape: tuple[int, int, int, int]
    kwargs: dict = field(default_factory=dict, hash=False)
    num_classes: int = 3

    @property
    def description(self) -> str:
        options = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        shape = "(" + ",".join(map(str, self.input_shape)) + ")"
        return f"{self.arch}{'[' + options + ']' if options else ''} {shape}"


# The sizes of issue 14's table; other built-in networks at sizes of the same cost.
# U-Net three ways, so that each pyseg module a built-in network can use is covered:
# transposed convolutions, bilinear upsampling, modulated deformable convolutions.
_UNET_SMALL = {"base_channels": 16, "depth": 3}
BUILTIN_SETUPS: dict[str, list[ModelSetup]] = {
    "pets-encdec": [ModelSetup("pets-encdec", "pets-encdec", (4, 3, 200, 200))],
    "deconvnet": [ModelSetup("deconvnet", "deconvnet", (2, 3, 128, 128))],
    "unet": [
        ModelSetup("unet", "unet", (8, 3, 64, 64), _UNET_SMALL),
        ModelSetup("unet-bilinear", "unet", (8, 3, 64, 64),
                   {**_UNET_SMALL, "upsample": "bilinear"}),
        ModelSetup("unet-dcn", "unet", (8, 3, 64, 64), {**_UNET_SMALL, "deformable": True}),
    ],
    "segnet": [ModelSetup("segnet", "segnet", (2, 3, 128, 128))],
    "fcn8s": [ModelSetup("fcn8s", "fcn8s", (2, 3, 128, 128))],
    "fcn16s": [ModelSetup("fcn16s", "fcn16s", (2, 3, 128, 128))],
    "fcn32s": [ModelSetup("fcn32s", "fcn32s", (2, 3, 128, 128))],
}
DEFAULT_INPUT = (2, 3, 128, 128)

# Tiny versions for ``--quick`` and the tests: same layers, a fraction of the cost.
QUICK_SETUPS: dict[str, list[ModelSetup]] = {
    "pets-encdec": [ModelSetup("pets-encdec", "pets-encdec", (1, 3, 24, 24))],
    "deconvnet": [ModelSetup("deconvnet", "deconvnet", (2, 3, 32, 32),
                             {"width": 0.0625, "dropout": 0.0})],
    "unet": [
        ModelSetup("unet", "unet", (2, 3, 16, 16), {"base_channels": 4, "depth": 2}),
        ModelSetup("unet-bilinear", "unet", (2, 3, 16, 16),
                   {"base_channels": 4, "depth": 2, "upsample": "bilinear"}),
        ModelSetup("unet-dcn", "unet", (2, 3, 16, 16),
                   {"base_channels": 4, "depth": 2, "deformable": True}),
    ],
    "segnet": [ModelSetup("segnet", "segnet", (2, 3, 32, 32), {"width": 0.0625})],
    "fcn8s": [ModelSetup("fcn8s", "fcn8s", (1, 3, 32, 32), {"width": 0.0625})],
    "fcn16s": [ModelSetup("fcn16s", "fcn16s", (1, 3, 32, 32), {"width": 0.0625})],
    "fcn32s": [ModelSetup("fcn32s", "fcn32s", (1, 3, 32, 32), {"width": 0.0625})],
}


def _segmentation_architectures() -> list[str]:
    """Names of every registered segmentation architecture (built-in and plugins)."""
    from pyseg import registry

    return [name for name in registry.list_architectures()
            if "segmentation" in registry.get_architecture(name).tasks]


def model_setups(networks: Iterable[str] = (), *, quick: bool = False) -> list[ModelSetup]:
    """The networks ``pyseg bench --models`` runs: every registered segmentation
    architecture (a plugin's at its defaults and ``DEFAULT_INPUT``), or those named in
    ``networks`` (architecture or setup names). ``quick``: the tiny versions ``--quick``
    runs. Raises ``KeyError`` for an unknown name.

    Example: U-Net is set up three ways (transposed convolutions, bilinear, deformable)::

        >>> from pyseg.bench.models import model_setups
        >>> [s.name for s in model_setups(["unet"], quick=True)]
        ['unet', 'unet-bilinear', 'unet-dcn']
    """
    table = QUICK_SETUPS if quick else BUILTIN_SETUPS
    setups = []
    for arch in _segmentation_architectures():
        setups += table.get(arch, [ModelSetup(arch, arch, (1, 3, 32, 32) if quick
                                              else DEFAULT_INPUT)])
    wanted = list(networks)
    if not wanted:
        return setups
    known = {s.name for s in setups} | {s.arch for s in setups}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise KeyError(f"no segmentation network named {', '.join(unknown)} "
                       f"(known: {', '.join(sorted(known))})")
    return [s for s in setups if s.name in wanted or s.arch in wanted]


# --- the torch twin ------------------------------------------------------------------------

def _torchvision_deform_conv2d(*args: Any, **kwargs: Any) -> torch.Tensor:
    import torchvision.ops

    return torchvision.ops.deform_conv2d(*args, **kwargs)


def _torch_module(module: nn.Module) -> nn.Module | None:
    """The torch / torchvision module that stands for ``module`` if it is a ``pyseg.nn``
    module (same parameters, buffers and ``requires_grad`` flags), else None."""
    import pyseg.nn as pnn

    kind = type(module)
    if kind is pnn.ConvTranspose2d:
        twin: nn.Module = nn.ConvTranspose2d(
            module.in_channels, module.out_channels, module.kernel_size, module.stride,
            module.padding, module.output_padding, module.groups, module.bias is not None,
            module.dilation, module.padding_mode)
    elif kind is pnn.MaxUnpool2d:
        twin = nn.MaxUnpool2d(module.kernel_size, module.stride, module.padding)
    elif kind is pnn.Upsample:
        twin = nn.Upsample(module.size, module.scale_factor, module.mode, module.align_corners,
                           module.recompute_scale_factor)
    elif kind is pnn.DeformConv2d:
        import torchvision.ops

        twin = torchvision.ops.DeformConv2d(
            module.in_channels, module.out_channels, module.kernel_size, module.stride,
            module.padding, module.dilation, module.groups, module.bias is not None)
    elif kind in (pnn.DeformConv2dPack, pnn.ModulatedDeformConv2dPack):
        # No torch module predicts its own offsets: the same module (its conv_offset is a
        # torch Conv2d already) with the deformable convolution done by torchvision.
        twin = copy.deepcopy(module)
        plain, modulated = _pack_classes()
        twin.__class__ = plain if kind is pnn.DeformConv2dPack else modulated
        return twin
    else:
        return None
    # assign=True: the twin takes the very tensors (device, dtype, memory format).
    twin.load_state_dict(module.state_dict(), assign=True)
    for name, p in twin.named_parameters():
        p.requires_grad_(module.get_parameter(name).requires_grad)
    return twin


@functools.cache
def _pack_classes() -> tuple[type, type]:
    import pyseg.nn as pnn

    class TorchvisionDeformConv2dPack(pnn.DeformConv2dPack):
        """``DeformConv2dPack`` computed by ``torchvision.ops.deform_conv2d``."""

        def forward(self, input: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return _torchvision_deform_conv2d(
                input, self.conv_offset(input), self.weight, self.bias, stride=self.stride,
                padding=self.padding, dilation=self.dilation)

    class TorchvisionModulatedDeformConv2dPack(pnn.ModulatedDeformConv2dPack):
        """``ModulatedDeformConv2dPack`` computed by ``torchvision.ops.deform_conv2d``."""

        def forward(self, input: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            out = self.conv_offset(input)
            n_off = 2 * self.deform_groups * self.kernel_size[0] * self.kernel_size[1]
            return _torchvision_deform_conv2d(
                input, out[:, :n_off], self.weight, self.bias, stride=self.stride,
                padding=self.padding, dilation=self.dilation, mask=torch.sigmoid(out[:, n_off:]))

    return TorchvisionDeformConv2dPack, TorchvisionModulatedDeformConv2dPack



def torch_twin(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``pyseg.nn`` module replaced by its torch /
    torchvision counterpart (``nn.ConvTranspose2d``, ``nn.MaxUnpool2d``, ``nn.Upsample``,
    ``torchvision.ops.DeformConv2d``; the offset-predicting deformable modules keep their
    ``conv_offset`` and call ``torchvision.ops.deform_conv2d``), with the same weights:
    ``twin.state_dict()`` has the same keys and values as ``model.state_dict()``. ``model``
    itself is left unchanged.

    Example::

        >>> from pyseg.bench.models import torch_twin
        >>> net = nn.Sequential(pyseg.nn.ConvTranspose2d(2, 2, 2, stride=2), nn.ReLU())
        >>> twin = torch_twin(net)
        >>> type(twin[0]) is nn.ConvTranspose2d, type(net[0]) is pyseg.nn.ConvTranspose2d
        (True, True)
        >>> x = torch.rand(1, 2, 3, 3)
        >>> torch.allclose(twin(x), net(x), atol=1e-6)
        True
    """
    twin = copy.deepcopy(model)

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            replacement = _torch_module(child)
            if replacement is None:
                swap(child)
            else:
                setattr(parent, name, replacement)

    whole = _torch_module(twin)
    if whole is not None:
        return whole
    swap(twin)
    return twin


# --- cases ---------------------------------------------------------------------------------

def _memory_format(layout: str) -> torch.memory_format:
    return torch.channels_last if layout == "nhwc" else torch.contiguous_format


def _make_inputs(setup: ModelSetup, layout: str) -> Callable[..., tuple]:
    def make(device: torch.device, dtype: torch.dtype) -> tuple:
        from pyseg import registry

        fmt = _memory_format(layout)
        torch.manual_seed(0)
        ours = registry.create_model(setup.arch, num_classes=setup.num_classes,
                                     in_channels=setup.input_shape[1], **setup.kwargs)
        ours = ours.to(device=device, dtype=dtype, memory_format=fmt)
        reference = torch_twin(ours)
        g = torch.Generator().manual_seed(1)
        x = torch.rand(setup.input_shape, generator=g).to(device=device, dtype=dtype)
        n, _, h, w = setup.input_shape
        target = torch.randint(0, setup.num_classes, (n, h, w), generator=g).to(device)
        return ours, reference, x.contiguous(memory_format=fmt), target

    return make


def _forward(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def _train_step(model: nn.Module, x: torch.Tensor,
                target: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    model.train()
    torch.manual_seed(0)  # the same dropout masks on both sides
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), target)
    return loss.detach(), torch.autograd.grad(loss, params)


def _named_train_step(model: nn.Module, x: torch.Tensor,
                      target: torch.Tensor) -> dict[str, Any]:
    """:func:`_train_step` as ``{"loss": ..., "gradient": {parameter name: gradient}}``, so
    that the agreement check names the parameter whose gradient it judges."""
    loss, grads = _train_step(model, x, target)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    return {"loss": loss, "gradient": dict(zip(names, grads, strict=True))}


def _side(step: Callable[..., Any], which: int) -> Callable[..., Any]:
    def call(ours: nn.Module, reference: nn.Module, x: torch.Tensor,
             target: torch.Tensor) -> Any:
        return step((ours, reference)[which], x, target)

    return call


def case_name(setup: ModelSetup, layout: str, pass_: str) -> str:
    return f"{MODEL_LABEL}/{setup.name}/{layout}/{pass_}"


def model_cases(setups: Sequence[ModelSetup]) -> list[BenchmarkCase]:
    """The four cases (2 layouts x 2 passes) of every setup, run by :func:`pyseg.bench.run`
    like any other case (label ``"models"``; ``backward`` is False: the training step is
    the timed statement itself), for each :class:`ModelSetup` of ``setups``.

    Example::

        >>> from pyseg.bench.models import model_cases, model_setups
        >>> [c.name for c in model_cases(model_setups(["unet"], quick=True)[:1])]
        ['models/unet/nchw/fwd', 'models/unet/nchw/train', 'models/unet/nhwc/fwd', 'models/unet/nhwc/train']
    """
    cases = []
    for setup in setups:
        for layout in LAYOUTS:
            for pass_ in PASSES:
                step = _forward if pass_ == "fwd" else _named_train_step
                cases.append(BenchmarkCase(
                    name=case_name(setup, layout, pass_), label=MODEL_LABEL,
                    sub_label=f"{setup.description} {layout.upper()} {pass_}",
                    make_inputs=_make_inputs(setup, layout), ours=_side(step, 0),
                    reference=_side(step, 1), rtol=MODEL_RTOL[pass_],
                    summary=f"{setup.name} with pyseg.nn modules vs with torch.nn / "
                            "torchvision modules, same weights",
                ))
    return cases


def model_table(results: Sequence[CaseResult]) -> str:
    """Ratio pyseg / torch per network (rows) and layout x pass (columns), from the results
    of :func:`model_cases` among ``results``; a case not timed shows its status, a cell with
    no case ``-``. ``""`` when there is no such result.

    Example::

        >>> from pyseg.bench import CaseResult, Timing
        >>> from pyseg.bench.models import model_table
        >>> def result(name, status="ok"):
        ...     return CaseResult(name, "models", "", "unet (2,3,16,16) NCHW fwd", False, "cpu",
        ...                       "float32", status, ours=Timing(1e-3, 0, 1e-3, 5, 1, None),
        ...                       reference=Timing(2e-3, 0, 2e-3, 5, 1, None))
        >>> print(model_table([result("models/unet/nchw/fwd"),
        ...                    result("models/unet/nhwc/fwd", "error")]).splitlines()[3])
        unet: unet (2,3,16,16)  0.50  -  error  -
    """
    columns = [(layout, pass_) for layout in LAYOUTS for pass_ in PASSES]
    rows: dict[str, dict[tuple[str, str], str]] = {}
    titles: dict[str, str] = {}
    for r in results:
        parts = r.name.split("/")
        if r.label != MODEL_LABEL or len(parts) != 4:
            continue
        _, net, layout, pass_ = parts
        key = f"{net} {r.dtype} {r.device}"
        titles[key] = f"{net}: {r.case_sub_label.rsplit(' ', 2)[0]}"
        rows.setdefault(key, {})[(layout, pass_)] = (
            f"{r.ratio:.2f}" if r.status == "ok" and r.ratio is not None
            and math.isfinite(r.ratio) else r.status)
    if not rows:
        return ""
    header = ["network, input", *(f"{p} {lay.upper()}" for lay, p in columns)]
    body = [[titles[k], *(cells.get(c, "-") for c in columns)] for k, cells in rows.items()]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    fmt = lambda row: "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    lines = ["ratio = time with pyseg's modules / time with torch's modules (lower is better)",
             fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)]
    return "\n".join(lines)


# --- the transposed-convolution layers of the networks -------------------------------------

@dataclass(frozen=True)
class ConvTransposeLayer:
    """The arguments one ``pyseg.nn.ConvTranspose2d`` layer of a network is called with."""

    input_shape: tuple[int, int, int, int]
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    groups: int
    dilation: tuple[int, int]
    bias: bool


def conv_transpose_layers(setups: Sequence[ModelSetup]) -> dict[ConvTransposeLayer, list[str]]:
    """Every distinct transposed-convolution call of the networks at their input sizes ->
    the setups that make it, found by running each network on the ``meta`` device (no
    memory, no arithmetic) with a hook on its ``pyseg.nn.ConvTranspose2d`` modules."""
    import pyseg.nn as pnn
    from pyseg import registry

    layers: dict[ConvTransposeLayer, list[str]] = {}
    for setup in setups:
        def record(module: nn.Module, args: tuple, setup: ModelSetup = setup) -> None:
            layer = ConvTransposeLayer(
                tuple(args[0].shape), module.out_channels, module.kernel_size, module.stride,
                module.padding, module.output_padding, module.groups, module.dilation,
                module.bias is not None)
            users = layers.setdefault(layer, [])
            if setup.name not in users:
                users.append(setup.name)

        with torch.device("meta"):
            model = registry.create_model(setup.arch, num_classes=setup.num_classes,
                                          in_channels=setup.input_shape[1], **setup.kwargs)
            handles = [m.register_forward_pre_hook(record) for m in model.modules()
                       if isinstance(m, pnn.ConvTranspose2d)]
            with torch.no_grad():
                model.eval()(torch.empty(setup.input_shape))
        for h in handles:
            h.remove()
    return layers
