"""Shared by ``pyseg predict`` and ``pyseg evaluate``: load a checkpoint into a model."""

from __future__ import annotations


def load_model(path: str):
    """``(model, state)`` from a checkpoint; raises ``UsageError`` with one line on failure."""
    from pyseg.cli import UsageError
    from pyseg.engine import CheckpointError, build_model, load_checkpoint

    try:
        state = load_checkpoint(path)
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    try:
        model = build_model(state["arch"], int(state["num_classes"]), state.get("arch_kwargs", {}))
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path}: cannot rebuild architecture {state['arch']!r}: {e}") from None
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise UsageError(f"{path}: weights do not fit architecture {state['arch']!r} with "
                         f"{state['num_classes']} classes ({first})") from None
    return model.eval(), state
