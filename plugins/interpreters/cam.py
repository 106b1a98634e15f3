"""Class activation maps: CAM (Zhou et al. 2016), Grad-CAM (Selvaraju et al. 2017) and
Grad-CAM++ (Chattopadhyay et al. 2018).

All three weight the feature maps ``A_k`` of one layer and keep the positive part::

    CAM        M_c = relu(sum_k w_ck A_k)                (w: the classifier after global pooling)
    Grad-CAM   M_c = relu(sum_k alpha_k A_k),  alpha_k = mean_ij d y_c / d A_kij
    Grad-CAM++ alpha_k = sum_ij a_kij relu(d y_c / d A_kij)  with the closed-form a_kij of the
               paper (for y = exp(score), as in pytorch-grad-cam)

then upsample bilinearly to the input and min-max normalize each map to [0, 1]. On a network
that ends in global average pooling + a linear layer, Grad-CAM at the pooled features equals CAM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from pyseg.interpret.core import (
    InterpretError,
    ModelGuard,
    activations_and_grads,
    combine_layer_maps,
    default_layer,
    finish_map,
    layer_name,
    logits_of,
    pick_layers,
    resolve_targets,
    target_scores,
)

__all__ = ["cam", "gradcam", "gradcam_plus_plus", "gradient_cam", "layer_activations_and_grads"]


def _reject_unknown(method: str, options: dict[str, Any]) -> None:
    if options:
        raise TypeError(f"{method}: unexpected option(s) {', '.join(sorted(options))}")


def gradient_cam(model: nn.Module, images: Tensor, target: Any, options: dict[str, Any],
                 method: str, weigh: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """The frame of the gradient methods: resolve the layers (default: the last conv layer
    with its activation), read activations ``A`` and gradients ``G`` at each, make the map
    ``relu(weigh(A, G))`` per layer and combine the layers with
    :func:`pyseg.interpret.core.combine_layer_maps` (``normalize`` option, default True)."""
    normalize = bool(options.pop("normalize", True))
    layers = pick_layers(model, options) or [default_layer(model, images)]
    _reject_unknown(method, options)
    acts, grads, *_ = activations_and_grads(model, images, layers, target)
    assert grads is not None
    maps = [torch.relu(weigh(a, g)) for a, g in zip(acts, grads)]
    return combine_layer_maps(maps, images, normalize)


def layer_activations_and_grads(
    model: nn.Module, images: Tensor, layer: nn.Module, target: Any = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Run ``model`` on ``images`` and return ``(activations, gradients, classes)`` at the
    output of ``layer``: the gradient of the per-image target score (see
    :func:`pyseg.interpret.core.target_scores`) with respect to the layer's output.

    The layer's output is replaced by a detached leaf inside a forward hook, so nothing before
    the layer is differentiated and no parameter ``.grad`` is touched.
    """
    store: dict[str, Tensor] = {}

    def hook(module, args, out):
        if not isinstance(out, Tensor):
            raise InterpretError(
                f"layer {layer_name(model, layer)!r} returns {type(out).__name__}, not a tensor"
            )
        leaf = out.detach().requires_grad_(True)
        store["a"] = leaf
        # A copy goes on, so that in-place ops downstream (ReLU(inplace=True)) cannot modify
        # the leaf we differentiate with respect to.
        return leaf.clone()

    with ModelGuard(model) as guard, torch.enable_grad():
        guard.forward_hook(layer, hook)
        logits = logits_of(model(images))
        if "a" not in store:
            raise InterpretError(f"layer {layer_name(model, layer)!r} was not run by the model")
        classes, mask = resolve_targets(logits.detach(), target)
        score = target_scores(logits, classes, mask).sum()
        a = store["a"]
        if score.requires_grad:
            (grads,) = torch.autograd.grad(score, a, allow_unused=True)
        else:
            grads = None
        if grads is None:  # the score does not depend on this layer
            grads = torch.zeros_like(a)
    if a.dim() != 4:
        raise InterpretError(
            f"layer {layer_name(model, layer)!r} outputs shape {tuple(a.shape)}; "
            "a (N, C, H, W) feature map is needed"
        )
    return a.detach(), grads.detach(), classes


def _gradcam_map(a: Tensor, g: Tensor) -> Tensor:
    return (g.mean(dim=(2, 3), keepdim=True) * a).sum(1)


def _gradcam_pp_map(a: Tensor, g: Tensor) -> Tensor:
    g2, g3 = g.pow(2), g.pow(3)
    sum_a = a.sum(dim=(2, 3), keepdim=True)
    denom = 2 * g2 + sum_a * g3
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True)
    return (weights * a).sum(1)


def gradcam(model: nn.Module, images: Tensor, target: Any = None, **options: Any) -> Tensor:
    """Grad-CAM heatmaps ``(N, H, W)`` in [0, 1].

    Options: ``layer`` / ``target_layer`` (module or dotted name, or a list of them whose maps
    are combined as in pytorch-grad-cam; default: the last conv layer with its activation),
    ``normalize`` (False: the raw map, not scaled to [0, 1]).
    """
    return gradient_cam(model, images, target, options, "gradcam", _gradcam_map)


def gradcam_plus_plus(
    model: nn.Module, images: Tensor, target: Any = None, **options: Any
) -> Tensor:
    """Grad-CAM++ heatmaps ``(N, H, W)`` in [0, 1]; options as :func:`gradcam`."""
    return gradient_cam(model, images, target, options, "gradcam++", _gradcam_pp_map)


# --------------------------------------------------------------------------------------------
# CAM
# --------------------------------------------------------------------------------------------

_NOT_GAP = (
    "cam needs a classifier ending in global average pooling + a linear layer (or global "
    "average pooling of class maps); {why}. Use method 'gradcam' for other models."
)


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def cam(model: nn.Module, images: Tensor, target: Any = None, **options: Any) -> Tensor:
    """CAM heatmaps ``(N, H, W)`` in [0, 1] for a network ending in global average pooling of
    feature maps ``F`` followed by a linear layer ``W`` (or by nothing: the pooled maps are the
    logits). ``M_c = relu(sum_k W[c, k] F_k)``.

    The pooled feature maps are found by running the model once and matching each 4-D
    activation's spatial mean against the classifier's input. Option ``layer`` /
    ``target_layer`` (a module, a name or a list of them) restricts the search to those
    modules' outputs; ``normalize=False`` returns the raw map.
    """
    normalize = bool(options.pop("normalize", True))
    layers = pick_layers(model, options)
    _reject_unknown("cam", options)
    records: list[tuple[str, nn.Module, Tensor | None, Any]] = []
    with ModelGuard(model) as guard, torch.no_grad():
        for name, m in model.named_modules():
            if m is model:
                continue

            def hook(mod, args, out, _name=name):
                inp = args[0] if args and isinstance(args[0], Tensor) else None
                records.append((_name, mod, inp, out))

            guard.forward_hook(m, hook)
        logits = logits_of(model(images))
    if logits.dim() != 2:
        raise InterpretError(_NOT_GAP.format(why=f"the output has shape {tuple(logits.shape)}"))
    classes, _ = resolve_targets(logits, target)

    candidates: list[Tensor] = []
    for name, m, inp, out in records:
        if layers is None or any(m is x for x in layers):
            for t in ((inp, out) if layers is None else (out,)):
                if isinstance(t, Tensor) and t.dim() == 4 and t.shape[0] == images.shape[0]:
                    candidates.append(t)

    def find_pooled(vec: Tensor) -> Tensor | None:
        # The pooled (N, C, 1, 1) output of the pooling layer matches too: prefer real maps.
        for spatial in (True, False):
            for t in reversed(candidates):
                if (t.shape[2] * t.shape[3] > 1) != spatial or t.shape[1] != vec.shape[1]:
                    continue
                if _close(t.float().mean(dim=(2, 3)), vec.float()):
                    return t
        return None

    idx = torch.arange(images.shape[0], device=logits.device)
    maps = None
    for name, m, inp, out in reversed(records):
        if isinstance(m, nn.Linear) and isinstance(out, Tensor) and _close(out, logits):
            feats = find_pooled(inp.flatten(1)) if inp is not None else None
            if feats is None:
                what = ("any feature map" if layers is None else "the output of "
                        + ", ".join(repr(layer_name(model, x)) for x in layers))
                raise InterpretError(_NOT_GAP.format(
                    why=f"the input of the classifier {name!r} is not the spatial mean of {what}"
                ))
            w = m.weight[classes].to(feats.dtype)  # (N, C)
            maps = torch.einsum("nc,nchw->nhw", w, feats)
            break
    if maps is None:
        feats = find_pooled(logits)
        if feats is None:
            raise InterpretError(_NOT_GAP.format(
                why="no linear layer produces the output and the output is not the spatial mean "
                "of a feature map"
            ))
        maps = feats[idx, classes]
    return finish_map(torch.relu(maps), images, normalize)
