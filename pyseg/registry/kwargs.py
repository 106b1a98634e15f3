"""Keyword checking for :func:`pyseg.create_model`: an unknown keyword is a ``TypeError``
that names it and lists what the architecture accepts, before anything is built."""

from __future__ import annotations

import inspect
from collections.abc import Iterable

from pyseg.registry.specs import Architecture

__all__ = ["check_kwargs"]

# Passed by create_model itself, never an option of the architecture.
_RESERVED = ("num_classes", "in_channels")
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def check_kwargs(arch: Architecture, keywords: Iterable[str]) -> None:
    """Raise ``TypeError`` for a keyword that ``arch.fn`` does not accept.

    Nothing is checked when ``fn`` takes ``**kwargs`` or has no readable signature (a
    builtin, say): then ``fn`` itself complains.

    Args:
        arch: the architecture whose ``fn`` is to be called.
        keywords: the keyword names that would be passed to it.

    Raises:
        TypeError: the first keyword ``fn`` does not accept; the message lists those it does.

    Example::

        >>> from pyseg.registry.kwargs import check_kwargs
        >>> check_kwargs(pyseg.get_architecture("unet"), ["base_channels"])
        >>> check_kwargs(pyseg.get_architecture("unet"), ["bogus"])
        Traceback (most recent call last):
        ...
        TypeError: architecture 'unet' got an unexpected keyword argument 'bogus'; ...
    """
    try:
        params = inspect.signature(arch.fn).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in _KEYWORD_KINDS and n not in _RESERVED]
    for key in keywords:
        if key not in accepted:
            raise TypeError(
                f"architecture {arch.name!r} got an unexpected keyword argument {key!r}; "
                f"it accepts: {', '.join(accepted) or '(no options)'}"
            )
