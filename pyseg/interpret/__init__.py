"""Shared machinery of the interpreters (CAM, Grad-CAM, hide-and-seek, excitation backprop).

The methods themselves are plugins (``pyseg_plugins.interpreters``); get one with
``pyseg.get_interpreter(name)``. See :mod:`pyseg.interpret.core` for the helpers.
"""

from pyseg.interpret.core import (  # noqa: F401
    InterpretError,
    ModelGuard,
    activations_and_grads,
    combine_layer_maps,
    default_layer,
    finish_map,
    layer_name,
    logits_of,
    minmax_normalize,
    pick_layers,
    resolve_layer,
    resolve_layers,
    resolve_targets,
    target_scores,
    upsample_to,
)
