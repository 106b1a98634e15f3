"""``pyseg.nn.convert(model)``: put pyseg's kernels into a network built from torch /
torchvision modules, in the manner of :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`.

Each module of an exact type below is replaced by a pyseg module that takes over its
attributes as they are: the same ``Parameter`` and buffer objects (so ``state_dict`` keys,
values, ``requires_grad`` and an optimizer built before the conversion are unchanged), its
hooks and its train / eval flag.

=================================================  ==========================================
torch / torchvision module                         replaced by (a subclass of)
=================================================  ==========================================
``nn.ConvTranspose2d``                             :class:`pyseg.nn.ConvTranspose2d`
``nn.Upsample``, ``nn.UpsamplingNearest2d``,       :class:`pyseg.nn.Upsample` (modes nearest,
``nn.UpsamplingBilinear2d``                        bilinear, bicubic)
``nn.MaxUnpool2d``                                 :class:`pyseg.nn.MaxUnpool2d`
``torchvision.ops.DeformConv2d``                   :class:`pyseg.nn.DeformConv2d`
=================================================  ==========================================

A converted module computes with pyseg's kernel whenever pyseg supports the call (the
checks of :mod:`pyseg.routing`: rank, dtype, device) and with torch's function otherwise, so
the conversion never changes what a network accepts. What is not converted is reported with
the reason: other configurations (e.g. ``nn.Upsample(mode="trilinear")``), 1-D and 3-D
relatives (``nn.ConvTranspose3d``...) and subclasses of the types above, whose ``forward``
may differ. Functional calls inside ``forward`` (``F.interpolate``, most of torchvision's
and segmentation_models_pytorch's upsampling) are not modules: :func:`pyseg.kernels` routes
those.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, overload

import torch.nn.functional as F
from torch import Tensor, nn

from pyseg import routing
from pyseg.nn.conv import ConvTranspose2d
from pyseg.nn.deform_conv import DeformConv2d
from pyseg.nn.unpool import MaxUnpool2d
from pyseg.nn.upsample import Upsample
from pyseg.ops.upsample import _MODES

__all__ = ["ConversionReport", "ConvertedConvTranspose2d", "ConvertedDeformConv2d",
           "ConvertedMaxUnpool2d", "ConvertedUpsample", "convert"]


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


class ConvertedUpsample(Upsample):
    """:class:`pyseg.nn.Upsample` that leaves to torch the calls pyseg does not support (e.g.
    5-D input); what :func:`convert` puts in place of ``nn.Upsample`` and its subclasses
    ``nn.UpsamplingNearest2d`` / ``nn.UpsamplingBilinear2d``. Built with the arguments of
    its base class (or by :func:`convert`); ``forward(input)`` as torch's.

    Example: the 4-D call goes to pyseg, the 5-D one to torch::

        >>> from pyseg.nn.convert import ConvertedUpsample
        >>> up = ConvertedUpsample(scale_factor=2, mode="nearest")
        >>> with pyseg.kernels() as mode:
        ...     a, b = up(torch.rand(1, 1, 2, 2)), up(torch.rand(1, 1, 2, 2, 2))
        >>> a.shape, b.shape, mode.stats.to_pyseg
        (torch.Size([1, 1, 4, 4]), torch.Size([1, 1, 4, 4, 4]), {'interpolate': 1})
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
        >>> _, report = pyseg.nn.convert(net, report=True)
        >>> [e.name for e in report.converted], [e.reason for e in report.not_converted]
        (['1'], ['not converted (use pyseg.nn.ConvTranspose3d directly)'])
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


# Same family, not swapped in (yet): pyseg.nn has these modules, convert() leaves them to the
# user (their routing and conversion tests are still to be written).
_NO_KERNEL: dict[type, str] = {
    nn.ConvTranspose1d: "not converted (use pyseg.nn.ConvTranspose1d directly)",
    nn.ConvTranspose3d: "not converted (use pyseg.nn.ConvTranspose3d directly)",
    nn.MaxUnpool1d: "not converted (use pyseg.nn.MaxUnpool1d directly)",
    nn.MaxUnpool3d: "not converted (use pyseg.nn.MaxUnpool3d directly)",
}


def _plan(module: nn.Module, ops: tuple[str, ...]) -> tuple[type[nn.Module] | None, str]:
    """(the pyseg class for ``module``, "") or (None, why not); ``(None, "")`` for a module
    of no kind pyseg replaces (not reported)."""
    kind = type(module)
    deform = _torchvision_deform_type()
    families: list[tuple[type, str, type[nn.Module]]] = [
        (nn.ConvTranspose2d, "conv_transpose2d", ConvertedConvTranspose2d),
        (nn.Upsample, "interpolate", ConvertedUpsample),
        (nn.MaxUnpool2d, "max_unpool2d", ConvertedMaxUnpool2d),
    ]
    if deform is not None:
        families.append((deform, "deform_conv2d", ConvertedDeformConv2d))
    upsample_types = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
    for base, op, target in families:
        if not isinstance(module, base):
            continue
        exact = kind in (upsample_types if base is nn.Upsample else (base,))
        if not exact:
            if isinstance(module, (ConvTranspose2d, Upsample, MaxUnpool2d, DeformConv2d)):
                return None, ""  # a pyseg module already
            return None, (f"a subclass of {base.__module__}.{base.__qualname__}: its forward "
                          "may differ")
        if op not in ops:
            return None, f"{op} not in ops"
        if base is nn.Upsample and module.mode not in _MODES:
            return None, f"mode={module.mode!r} (pyseg: {', '.join(_MODES)})"
        return target, ""
    if kind in _NO_KERNEL:
        return None, _NO_KERNEL[kind]
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

        >>> net = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 2, stride=2),
        ...                           torch.nn.Upsample(scale_factor=2, mode="trilinear"))
        >>> net, rep = pyseg.nn.convert(net, report=True)
        >>> print(rep)
        converted      0: ConvTranspose2d -> ConvertedConvTranspose2d
        not converted  1: Upsample (mode='trilinear' (pyseg: nearest, bilinear, bicubic))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    chosen = routing.check_ops(ops)
    result = ConversionReport()
    converted = _convert(model, "", chosen, result)
    return (converted, result) if report else converted
