"""Building a network from an architecture name."""

from __future__ import annotations

import importlib

from torch import nn

from pyseg import registry


def build_model(arch: str, num_classes: int, arch_kwargs: dict | None = None,
                in_channels: int = 3) -> nn.Module:
    """Build ``arch``: a registered architecture name, or an import path
    ``"package.module:factory"``.

    An import path runs the code it names, so it is for names the user typed (``--arch``)
    or a program passed, never for a name read from a file: :func:`pyseg.engine.load_model`
    accepts only registered names from a checkpoint.

    ``num_classes`` and ``in_channels`` go to the factory with ``arch_kwargs`` (None: no
    options). Raises ``ValueError`` (listing the known names) for an unknown architecture or
    an import path that does not import, and ``TypeError`` for a keyword the architecture
    does not take.

    Example::

        >>> from pyseg.engine import build_model
        >>> net = build_model("unet", 2, {"base_channels": 4, "depth": 2})
        >>> net(torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
        >>> build_model("unet", 2, {"base_channels": 4, "depth": 2}, in_channels=1)(
        ...     torch.rand(1, 1, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
        >>> build_model("unett", 2)
        Traceback (most recent call last):
        ...
        ValueError: unknown architecture 'unett'. Did you mean 'unet'? ...
    """
    arch_kwargs = dict(arch_kwargs or {})
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import architecture {arch!r}: {e}") from None
        return factory(num_classes=num_classes, in_channels=in_channels, **arch_kwargs)
    try:
        return registry.create_model(arch, num_classes=num_classes, in_channels=in_channels,
                                     **arch_kwargs)
    except registry.UnknownNameError as e:
        raise ValueError(str(e)) from None


def registered_tasks(arch: str) -> frozenset[str] | None:
    """The tasks a registered architecture declares; None for an import path or an unknown
    name (those are reported when the model is built)."""
    if ":" in arch:
        return None
    try:
        return registry.get_architecture(arch).tasks
    except registry.UnknownNameError:
        return None
