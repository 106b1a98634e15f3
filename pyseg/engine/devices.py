"""Turning a ``--device`` string into a torch device that works here."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """``torch.device(name)`` after checking that a tensor can be made there.

    Any torch device string is accepted (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ``xpu``...).
    Raises ``ValueError`` with one line for a string that is not a device, for ``meta``
    (it holds no values) and for a device this machine does not have.

    Example::

        >>> from pyseg.engine import resolve_device
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("gpu")
        Traceback (most recent call last):
        ...
        ValueError: --device 'gpu' is not a torch device (e.g. cpu, cuda, cuda:1, mps)
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"--device {str(name)!r} is not a torch device "
                         "(e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "meta":
        raise ValueError("--device meta holds no values: choose a device that computes")
    if device.type == "cuda":  # checked without creating a CUDA context on GPU 0
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device} is not available here (CUDA is not available)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {device} is not available here ({count} CUDA "
                             f"device{'s' if count != 1 else ''})")
        return device
    try:
        torch.empty(0, device=device)
    except Exception as e:  # noqa: BLE001 - torch raises several types for a missing device
        text = str(e).strip()
        reason = text.splitlines()[0] if text else type(e).__name__
        raise ValueError(f"--device {device} is not available here ({reason})") from None
    return device
