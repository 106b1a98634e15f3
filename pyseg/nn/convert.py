"""``pyseg.nn.convert(model)``: put pyseg's kernels into a network built from torch /
torchvision modules, in the manner of :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`.

Each module of an exact type below is replaced by a pyseg module that takes over its
attributes as they are: the same ``Parameter`` and buffer objects (so ``state_dict`` keys,
values, ``requires_grad`` and an optimizer built before the conversion are unchanged), its
hooks and its train / eval flag.

=================================================  ==========================================
torch / torchvision module                         replaced by (a subclass of)
=================================================  ==========================================
``nn.ConvTranspose1d`` / ``2d`` / ``3d``           :class:`pyseg.nn.ConvTranspose1d` / ``2d``
                                                   / ``3d``
``nn.Upsample``, ``nn.UpsamplingNearest2d``,       :class:`pyseg.nn.Upsample` (every mode)
``nn.UpsamplingBilinear2d``
``nn.MaxUnpool1d`` / ``2d`` / ``3d``               :class:`pyseg.nn.MaxUnpool1d` / ``2d`` /
                                                   ``3d``
``torchvision.ops.DeformConv2d``                   :class:`pyseg.nn.DeformConv2d`
=================================================  ==========================================

A converted module computes with pyseg's kernel whenever pyseg supports the call (the
checks of :mod:`pyseg.routing`: rank, mode, dtype, device) and with torch's function
otherwise, so the conversion never changes what a network accepts. What is not converted is
reported with the reason: an op left out of ``ops``, an ``nn.Upsample`` whose mode pyseg does
not know, and subclasses of the types above, whose ``forward`` may differ. Functional calls
inside ``forward`` (``F.interpolate``, ``F.grid_sample``, most of torchvision's and
segmentation_models_pytorch's upsampling) are not modules: :func:`pyseg.kernels` routes
those.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, overload

import torch.nn.functional as F
from torch import Tensor, nn

from pyseg import routing
from pyseg.nn.conv import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from pyseg.nn.deform_conv import DeformConv2d
from pyseg.nn.unpool import MaxUnpool1d, MaxUnpool2d, MaxUnpool3d
from pyseg.nn.upsample import Upsample
from pyseg.ops.upsample import _ND_MODES

__all__ = ["ConversionReport", "ConvertedConvTranspose1d", "ConvertedConvTranspose2d",
           "ConvertedConvTranspose3d", "ConvertedDeformConv2d", "ConvertedMaxUnpool1d",
           "ConvertedMaxUnpool2d", "ConvertedMaxUnpool3d", "ConvertedUpsample", "convert"]


class ConvertedConvTranspose2d(ConvTranspose2d):
    """:class:`pyseg.nn.ConvTranspose2d` that leaves to torch the calls pyseg's kernel does
    not support (:func:`pyseg.routing.why_not`); what :func:`convert` puts in place of an
    ``nn.ConvTranspose2d``. Built with the arguments of its base class (or by
    :func:`convert`, from an existing module); ``forward(input, output_size=None)`` as torch's.

    Example: pyseg computes the call, and agrees with torch::

        >>> from pyseg.nn.convert import ConvertedConvTranspose2d
        >>> up = ConvertedConvTranspose2d(2, 1, 2, stride=2)
        >>> x = torch.rand(1, 2, 3, 3)
        >>> with pyseg.kernels() as mode:
        ...     y = up(x)
        >>> y.shape, mode.stats.to_pyseg
        (torch.Size([1, 1, 6, 6]), {'conv_transpose2d': 1})
        >>> torch.allclose(y, F.conv_transpose2d(x, up.weight, up.bias, stride=2), atol=1e-6)
        True
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        # torch's ConvTranspose2d.forward, with the call routed.
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size,  # type: ignore[arg-type]
            2, self.dilation,  # type: ignore[arg-type]
        )
        out: Tensor = routing.call(
            "conv_transpose2d", F.conv_transpose2d, input, self.weight, self.bias, self.stride,
            self.padding, output_padding, self.groups, self.dilation)
        return out


class ConvertedConvTranspose1d(ConvTranspose1d):
    """:class:`pyseg.nn.ConvTranspose1d` that leaves to torch the calls pyseg's kernel does
    not support (:func:`pyseg.routing.why_not`); what :func:`convert` puts in place of an
    ``nn.ConvTranspose1d``. Built with the arguments of its base class (or by
    :func:`convert`); ``forward(input, output_size=None)`` as torch's.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, output_padding, groups,
            bias, dilation, padding_mode, device, dtype: as for :class:`torch.nn.ConvTranspose1d`.

    Example::

        >>> from pyseg.nn.convert import ConvertedConvTranspose1d
        >>> up = ConvertedConvTranspose1d(2, 1, 4, stride=2, padding=1)
        >>> x = torch.rand(1, 2, 5)
        >>> with pyseg.kernels() as mode:
        ...     y = up(x)
        >>> y.shape, mode.stats.to_pyseg
        (torch.Size([1, 1, 10]), {'conv_transpose1d': 1})
        >>> torch.allclose(y, F.conv_transpose1d(x, up.weight, up.bias, 2, 1), atol=1e-6)
        True
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        # torch's ConvTranspose1d.forward, with the call routed.
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size,  # type: ignore[arg-type]
            1, self.dilation,  # type: ignore[arg-type]
        )
        out: Tensor = routing.call(
            "conv_transpose1d", F.conv_transpose1d, input, self.weight, self.bias, self.stride,
            self.padding, output_padding, self.groups, self.dilation)
        return out


class ConvertedConvTranspose3d(ConvTranspose3d):
    """:class:`pyseg.nn.ConvTranspose3d` that leaves to torch the calls pyseg's kernel does
    not support (:func:`pyseg.routing.why_not`); what :func:`convert` puts in place of an
    ``nn.ConvTranspose3d``. Built with the arguments of its base class (or by
    :func:`convert`); ``forward(input, output_size=None)`` as torch's.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, output_padding, groups,
            bias, dilation, padding_mode, device, dtype: as for :class:`torch.nn.ConvTranspose3d`.

    Example::

        >>> from pyseg.nn.convert import ConvertedConvTranspose3d
        >>> up = ConvertedConvTranspose3d(2, 1, 2, stride=2)
        >>> x = torch.rand(1, 2, 2, 3, 3)
        >>> with pyseg.kernels() as mode:
        ...     y = up(x)
        >>> y.shape, mode.stats.to_pyseg
        (torch.Size([1, 1, 4, 6, 6]), {'conv_transpose3d': 1})
        >>> torch.allclose(y, F.conv_transpose3d(x, up.weight, up.bias, stride=2), atol=1e-6)
        True
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        # torch's ConvTranspose3d.forward, with the call routed.
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size,  # type: ignore[arg-type]
            3, self.dilation,  # type: ignore[arg-type]
        )
        out: Tensor = routing.call(
            "conv_transpose3d", F.conv_transpose3d, input, self.weight, self.bias, self.stride,
            self.padding, output_padding, self.groups, self.dilation)
        return out


class ConvertedUpsample(Upsample):
    """:class:`pyseg.nn.Upsample` that leaves to torch the calls pyseg does not support (e.g.
    integer tensors); what :func:`convert` puts in place of ``nn.Upsample`` and its
    subclasses ``nn.UpsamplingNearest2d`` / ``nn.UpsamplingBilinear2d``. Built with the
    arguments of its base class (or by :func:`convert`); ``forward(input)`` as torch's.

    Example: the 4-D and 5-D float calls go to pyseg, the uint8 one to torch::

        >>> from pyseg.nn.convert import ConvertedUpsample
        >>> up = ConvertedUpsample(scale_factor=2, mode="nearest")
        >>> with pyseg.kernels() as mode:
        ...     a, b = up(torch.rand(1, 1, 2, 2)), up(torch.rand(1, 1, 2, 2, 2))
        ...     c = up(torch.ones(1, 1, 2, 2, dtype=torch.uint8))
        >>> b.shape, mode.stats.to_pyseg, mode.stats.to_torch
        (torch.Size([1, 1, 4, 4, 4]), {'interpolate': 2}, {('interpolate', 'dtype uint8'): 1})
    """

    def forward(self, input: Tensor) -> Tensor:
        out: Tensor = routing.call(
            "interpolate", F.interpolate, input, self.size, self.scale_factor, self.mode,
            self.align_corners, recompute_scale_factor=self.recompute_scale_factor)
        return out


class ConvertedMaxUnpool2d(MaxUnpool2d):
    """:class:`pyseg.nn.MaxUnpool2d` that leaves to torch the calls pyseg does not support;
    what :func:`convert` puts in place of an ``nn.MaxUnpool2d``. Built with the arguments of
    its base class (or by :func:`convert`); ``forward(input, indices, output_size=None)`` as
    torch's.

    Example::

        >>> from pyseg.nn.convert import ConvertedMaxUnpool2d
        >>> x, idx = F.max_pool2d(torch.rand(1, 1, 4, 4), 2, return_indices=True)
        >>> torch.equal(ConvertedMaxUnpool2d(2)(x, idx), F.max_unpool2d(x, idx, 2))
        True
    """

    def forward(self, input: Tensor, indices: Tensor,
                output_size: Sequence[int] | None = None) -> Tensor:
        out: Tensor = routing.call(
            "max_unpool2d", F.max_unpool2d, input, indices, self.kernel_size, self.stride,
            self.padding, output_size)
        return out


class ConvertedMaxUnpool1d(MaxUnpool1d):
    """:class:`pyseg.nn.MaxUnpool1d` that leaves to torch the calls pyseg does not support;
    what :func:`convert` puts in place of an ``nn.MaxUnpool1d``. Built with the arguments of
    its base class (or by :func:`convert`); ``forward(input, indices, output_size=None)`` as
    torch's.

    Args:
        kernel_size, stride, padding: as for :class:`torch.nn.MaxUnpool1d`.

    Example::

        >>> from pyseg.nn.convert import ConvertedMaxUnpool1d
        >>> x, idx = F.max_pool1d(torch.rand(1, 1, 6), 2, return_indices=True)
        >>> torch.equal(ConvertedMaxUnpool1d(2)(x, idx), F.max_unpool1d(x, idx, 2))
        True
    """

    def forward(self, input: Tensor, indices: Tensor,
                output_size: Sequence[int] | None = None) -> Tensor:
        out: Tensor = routing.call(
            "max_unpool1d", F.max_unpool1d, input, indices, self.kernel_size, self.stride,
            self.padding, output_size)
        return out


class ConvertedMaxUnpool3d(MaxUnpool3d):
    """:class:`pyseg.nn.MaxUnpool3d` that leaves to torch the calls pyseg does not support;
    what :func:`convert` puts in place of an ``nn.MaxUnpool3d``. Built with the arguments of
    its base class (or by :func:`convert`); ``forward(input, indices, output_size=None)`` as
    torch's.

    Args:
        kernel_size, stride, padding: as for :class:`torch.nn.MaxUnpool3d`.

    Example::

        >>> from pyseg.nn.convert import ConvertedMaxUnpool3d
        >>> x, idx = F.max_pool3d(torch.rand(1, 1, 4, 4, 4), 2, return_indices=True)
        >>> torch.equal(ConvertedMaxUnpool3d(2)(x, idx), F.max_unpool3d(x, idx, 2))
        True
    """

    def forward(self, input: Tensor, indices: Tensor,
                output_size: Sequence[int] | None = None) -> Tensor:
        out: Tensor = routing.call(
            "max_unpool3d", F.max_unpool3d, input, indices, self.kernel_size, self.stride,
            self.padding, output_size)
        return out


class ConvertedDeformConv2d(DeformConv2d):
    """:class:`pyseg.nn.DeformConv2d` that leaves to torchvision the calls pyseg does not
    support; what :func:`convert` puts in place of a ``torchvision.ops.DeformConv2d``. Built
    with the arguments of its base class (or by :func:`convert`);
    ``forward(input, offset, mask=None)`` as torchvision's.

    Example: zero offsets make it a plain convolution::

        >>> from pyseg.nn.convert import ConvertedDeformConv2d
        >>> conv = ConvertedDeformConv2d(2, 3, 3, padding=1)
        >>> x, offset = torch.rand(1, 2, 5, 5), torch.zeros(1, 18, 5, 5)
        >>> torch.allclose(conv(x, offset), F.conv2d(x, conv.weight, conv.bias, padding=1),
        ...                atol=1e-5)
        True
    """

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        out: Tensor = routing.call(
            "deform_conv2d", routing._torchvision_deform_conv2d, input, offset, self.weight,
            self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation,
            mask=mask)
        return out


@dataclass(frozen=True)
class ConversionEntry:
    """One module :func:`convert` looked at: its qualified ``name`` in the model (``""`` for
    the model itself), its ``kind`` (class name), and the pyseg class it became
    (``converted_to``) or the ``reason`` it was left alone.

    Example::

        >>> _, report = pyseg.nn.convert(torch.nn.MaxUnpool2d(2), report=True)
        >>> report.converted[0]
        ConversionEntry(name='', kind='MaxUnpool2d', converted_to='ConvertedMaxUnpool2d', reason='')
    """

    name: str
    kind: str
    converted_to: str | None = None
    reason: str = ""


@dataclass
class ConversionReport:
    """What :func:`convert` did: ``converted`` and ``not_converted`` entries, in module order.

    ``str(report)`` is a table, one line per module (``converted`` and ``not_converted``
    start empty when built by hand).

    Example::

        >>> net = torch.nn.Sequential(torch.nn.ConvTranspose3d(1, 1, 2), torch.nn.MaxUnpool2d(2))
        >>> _, report = pyseg.nn.convert(net, ops=["max_unpool2d"], report=True)
        >>> [e.name for e in report.converted], [e.reason for e in report.not_converted]
        (['1'], ['conv_transpose3d not in ops'])
        >>> print(pyseg.nn.ConversionReport())
        no module of a kind pyseg can replace
    """

    converted: list[ConversionEntry] = field(default_factory=list)
    not_converted: list[ConversionEntry] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"converted      {e.name or '(model)'}: {e.kind} -> {e.converted_to}"
                 for e in self.converted]
        lines += [f"not converted  {e.name or '(model)'}: {e.kind} ({e.reason})"
                  for e in self.not_converted]
        return "\n".join(lines) or "no module of a kind pyseg can replace"


def _torchvision_deform_type() -> type | None:
    import sys

    # A model holding torchvision's module has imported torchvision.
    tv_ops = sys.modules.get("torchvision.ops")
    return getattr(tv_ops, "DeformConv2d", None) if tv_ops is not None else None


# The pyseg modules, which convert() leaves as they are.
_PYSEG_MODULES = (ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, Upsample, MaxUnpool1d,
                  MaxUnpool2d, MaxUnpool3d, DeformConv2d)
_UPSAMPLE_TYPES = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)


def _plan(module: nn.Module, ops: tuple[str, ...]) -> tuple[type[nn.Module] | None, str]:
    """(the pyseg class for ``module``, "") or (None, why not); ``(None, "")`` for a module
    of no kind pyseg replaces (not reported)."""
    kind = type(module)
    deform = _torchvision_deform_type()
    families: list[tuple[type, str, type[nn.Module]]] = [
        (nn.ConvTranspose1d, "conv_transpose1d", ConvertedConvTranspose1d),
        (nn.ConvTranspose2d, "conv_transpose2d", ConvertedConvTranspose2d),
        (nn.ConvTranspose3d, "conv_transpose3d", ConvertedConvTranspose3d),
        (nn.Upsample, "interpolate", ConvertedUpsample),
        (nn.MaxUnpool1d, "max_unpool1d", ConvertedMaxUnpool1d),
        (nn.MaxUnpool2d, "max_unpool2d", ConvertedMaxUnpool2d),
        (nn.MaxUnpool3d, "max_unpool3d", ConvertedMaxUnpool3d),
    ]
    if deform is not None:
        families.append((deform, "deform_conv2d", ConvertedDeformConv2d))
    for base, op, target in families:
        if not isinstance(module, base):
            continue
        exact = kind in (_UPSAMPLE_TYPES if base is nn.Upsample else (base,))
        if not exact:
            if isinstance(module, _PYSEG_MODULES):
                return None, ""  # a pyseg module already
            return None, (f"a subclass of {base.__module__}.{base.__qualname__}: its forward "
                          "may differ")
        if op not in ops:
            return None, f"{op} not in ops"
        if base is nn.Upsample and module.mode not in _ND_MODES:
            return None, f"mode={module.mode!r} (pyseg: {', '.join(_ND_MODES)})"
        return target, ""
    return None, ""


def _replace(module: nn.Module, target: type[nn.Module]) -> nn.Module:
    # A new object of the pyseg class with the very same attribute dicts: the parameters,
    # buffers, submodules and hooks are the original's (hook handles keep working).
    new = target.__new__(target)
    new.__dict__.update(module.__dict__)
    return new


def _convert(module: nn.Module, name: str, ops: tuple[str, ...],
             report: ConversionReport) -> nn.Module:
    target, reason = _plan(module, ops)
    kind = type(module).__qualname__
    if target is not None:
        report.converted.append(ConversionEntry(name, kind, converted_to=target.__qualname__))
        return _replace(module, target)
    if reason:
        report.not_converted.append(ConversionEntry(name, kind, reason=reason))
    for child_name, child in list(module.named_children()):
        new = _convert(child, f"{name}.{child_name}" if name else child_name, ops, report)
        if new is not child:
            setattr(module, child_name, new)
    return module


@overload
def convert(model: nn.Module, ops: Iterable[str] | None = ...,
            report: Literal[False] = ...) -> nn.Module: ...


@overload
def convert(model: nn.Module, ops: Iterable[str] | None = ..., *,
            report: Literal[True]) -> tuple[nn.Module, ConversionReport]: ...


def convert(model: nn.Module, ops: Iterable[str] | None = None,
            report: bool = False) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Replace every torch / torchvision module pyseg has a kernel for by pyseg's drop-in.

    The conversion is done in place (``copy.deepcopy`` the model first to keep the
    original) and keeps every ``Parameter`` and buffer object, so ``state_dict()`` has the
    same keys and values and the outputs are those of torch's modules up to float
    round-off.

    Args:
        model: any ``nn.Module``; if it is itself a convertible module, a new module is
            returned.
        ops: which of :data:`pyseg.routing.OPS` to convert (default: all). ``nn.Upsample``
            belongs to ``"interpolate"``.
        report: also return a :class:`ConversionReport` of what was and was not converted
            (and why).

    Returns:
        The converted model, or ``(model, report)`` with ``report=True``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: an unknown name in ``ops``.

    Example::

        >>> class Twice(torch.nn.Upsample):  # a subclass: its forward may differ
        ...     pass
        >>> net = torch.nn.Sequential(torch.nn.ConvTranspose3d(4, 2, 2, stride=2),
        ...                           torch.nn.Upsample(scale_factor=2, mode="trilinear"),
        ...                           Twice(scale_factor=2))
        >>> net, rep = pyseg.nn.convert(net, report=True)
        >>> print(rep)
        converted      0: ConvTranspose3d -> ConvertedConvTranspose3d
        converted      1: Upsample -> ConvertedUpsample
        not converted  2: Twice (a subclass of torch.nn.modules.upsampling.Upsample: its forward may differ)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    chosen = routing.check_ops(ops)
    result = ConversionReport()
    converted = _convert(model, "", chosen, result)
    return (converted, result) if report else converted
