"""More class activation maps, written after pytorch-grad-cam (Gildenblat et al.), whose
results they reproduce on the same model and layer (tests/interpret/test_against_grad_cam.py):

    Layer-CAM  (Jiang et al. 2021)   M = relu(sum_k relu(G_k) * A_k)        (element-wise)
    HiResCAM   (Draelos & Carin 2020) M = relu(sum_k G_k * A_k)
    XGrad-CAM  (Fu et al. 2020)      alpha_k = sum_ij G_kij A_kij / (sum_ij A_kij + 1e-7)
    Eigen-CAM  (Muhammad & Yeasin 2020) M = relu(projection of the centred (HW, C) features on
                                     their first principal direction); class-agnostic
    Score-CAM  (Wang et al. 2020)    alpha = softmax_k(score(x * up(A_k) scaled to [0, 1]))
    Ablation-CAM (Desai & Ramaswamy 2020) alpha_k = (y - y_k) / y, y_k the score with channel
                                     k of the layer's output set to 0

``A`` are the activations of the chosen layer, ``G`` the gradients of the target score (class
logit, or the class's logits summed over a pixel mask for segmentation) with respect to them.
Several layers are combined as :func:`pyseg.interpret.core.combine_layer_maps` says;
``normalize=False`` returns the raw map.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pyseg_plugins.interpreters.cam import _reject_unknown, gradient_cam
from torch import Tensor, nn

from pyseg.interpret.core import (
    ModelGuard,
    activations_and_grads,
    combine_layer_maps,
    default_layer,
    logits_of,
    pick_layers,
    target_scores,
)

__all__ = ["ablation_cam", "eigen_cam", "eigen_projection", "hires_cam", "layer_cam",
           "score_cam", "xgrad_cam"]


def layer_cam(model: nn.Module, images: Tensor, target: Any = None, **options: Any) -> Tensor:
    """Layer-CAM heatmaps ``(N, H, W)`` in [0, 1]: positive gradients weigh each activation.

    Options: ``layer`` / ``target_layer`` (a module, dotted name or list; default: the last
    conv layer with its activation), ``normalize`` (False: raw map).
    """
    return gradient_cam(model, images, target, options, "layercam",
                        lambda a, g: (torch.relu(g) * a).sum(1))


def hires_cam(model: nn.Module, images: Tensor, target: Any = None, **options: Any) -> Tensor:
    """HiResCAM heatmaps ``(N, H, W)`` in [0, 1]: gradient times activation, summed over
    channels (no spatial averaging of the gradients). Options as :func:`layer_cam`."""
    return gradient_cam(model, images, target, options, "hirescam", lambda a, g: (g * a).sum(1))


def _xgrad(a: Tensor, g: Tensor) -> Tensor:
    weights = (g * a / (a.sum(dim=(2, 3), keepdim=True) + 1e-7)).sum(dim=(2, 3), keepdim=True)
    return (weights * a).sum(1)


def xgrad_cam(model: nn.Module, images: Tensor, target: Any = None, **options: Any) -> Tensor:
    """XGrad-CAM heatmaps ``(N, H, W)`` in [0, 1]: channel weights are the gradients averaged
    with the activations as weights. Options as :func:`layer_cam`."""
    return gradient_cam(model, images, target, options, "xgradcam", _xgrad)


def _layers(model: nn.Module, images: Tensor, options: dict[str, Any]) -> list[nn.Module]:
    return pick_layers(model, options) or [default_layer(model, images)]


# --------------------------------------------------------------------------------------------
# Eigen-CAM
# --------------------------------------------------------------------------------------------


def eigen_projection(acts: Tensor) -> Tensor:
    """``(N, C, h, w)`` features -> ``(N, h, w)``: each position's centred feature vector
    projected on the first right singular vector of the ``(hw, C)`` matrix (features centred
    over positions), as pytorch-grad-cam's ``get_2d_projection``.

    The sign of a singular vector is arbitrary (LAPACK picks one); here it is fixed so that
    the projection correlates non-negatively with the channel sum of the activations (the
    map points where the features fire), which makes the result independent of the solver.
    """
    n, _, h, w = acts.shape
    x = acts.float().nan_to_num(0.0).flatten(2).transpose(1, 2)  # (N, hw, C)
    x = x - x.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    proj = (x @ vh[:, 0, :, None])[..., 0]  # (N, hw)
    energy = acts.float().nan_to_num(0.0).sum(1).flatten(1)
    energy = energy - energy.mean(1, keepdim=True)
    flip = (proj * energy).sum(1, keepdim=True) < 0
    return torch.where(flip, -proj, proj).view(n, h, w)


def eigen_cam(model: nn.Module, images: Tensor, target: Any = None, **options: Any) -> Tensor:
    """Eigen-CAM heatmaps ``(N, H, W)`` in [0, 1]: the first principal component of the
    layer's features (see :func:`eigen_projection`), positive part. It uses no class and no
    gradient: ``target`` is only checked, and a segmentation network is explained as a whole
    (the dominant feature pattern of its decoder/encoder layer). Options as :func:`layer_cam`.
    """
    normalize = bool(options.pop("normalize", True))
    layers = _layers(model, images, options)
    _reject_unknown("eigencam", options)
    acts, *_ = activations_and_grads(model, images, layers, target, grads=False)
    maps = [torch.relu(eigen_projection(a)) for a in acts]
    return combine_layer_maps(maps, images, normalize)


# --------------------------------------------------------------------------------------------
# Perturbation methods (batched forward passes without gradients)
# --------------------------------------------------------------------------------------------


def _check_batch(batch_size: Any) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def _scores_of(model: nn.Module, batch: Tensor, classes: Tensor, mask: Tensor | None) -> Tensor:
    out = logits_of(model(batch))
    return target_scores(out, classes, mask).float()


def score_cam(model: nn.Module, images: Tensor, target: Any = None, **options: Any) -> Tensor:
    """Score-CAM heatmaps ``(N, H, W)`` in [0, 1].

    Each channel's activation map, upsampled to the input (bilinear, corners aligned, as
    pytorch-grad-cam) and scaled to [0, 1], masks the input; the target scores of the ``C``
    masked images, through a softmax over channels, weigh the activation maps. Costs ``N * C``
    forward passes per layer, ``batch_size`` (default 32) masked images at a time: memory is
    about ``batch_size`` times one image's forward activations.

    Options: ``layer`` / ``target_layer``, ``normalize`` (as :func:`layer_cam`),
    ``batch_size``.
    """
    normalize = bool(options.pop("normalize", True))
    batch_size = _check_batch(options.pop("batch_size", 32))
    layers = _layers(model, images, options)
    _reject_unknown("scorecam", options)
    acts, _, classes, mask, _ = activations_and_grads(model, images, layers, target, grads=False)
    maps = []
    with ModelGuard(model), torch.no_grad():
        for a in acts:
            n, c = a.shape[:2]
            up = F.interpolate(a.float(), size=images.shape[-2:], mode="bilinear",
                               align_corners=True)
            lo = up.flatten(2).amin(2)[..., None, None]
            hi = up.flatten(2).amax(2)[..., None, None]
            up = (up - lo) / (hi - lo + 1e-8)  # (N, C, H, W)
            scores = torch.empty(n, c)
            for i in range(n):
                for k0 in range(0, c, batch_size):
                    k1 = min(c, k0 + batch_size)
                    batch = images[i:i + 1] * up[i, k0:k1, None].to(images.dtype)
                    m = None if mask is None else mask[i:i + 1].expand(k1 - k0, *mask.shape[1:])
                    scores[i, k0:k1] = _scores_of(model, batch, classes[i].expand(k1 - k0),
                                                  m).cpu()
            weights = torch.softmax(scores, 1).to(a.device)
            maps.append(torch.relu((weights[:, :, None, None] * a.float()).sum(1)))
    return combine_layer_maps(maps, images, normalize)


def ablation_cam(model: nn.Module, images: Tensor, target: Any = None, **options: Any) -> Tensor:
    """Ablation-CAM heatmaps ``(N, H, W)`` in [0, 1].

    Channel ``k``'s weight is the relative drop of the target score ``(y - y_k) / y`` when
    channel ``k`` of the layer's output is set to zero (the paper's ablation; where ``y`` is
    0 the plain drop is used). Costs ``N * C`` forward passes per layer, ``batch_size``
    (default 32) ablated copies of one image at a time.

    pytorch-grad-cam ablates to 0 only when the layer's output contains a 0 (as a ReLU's
    does) and otherwise to ``min - 1e7``; on rectified layers the two agree.

    Options: ``layer`` / ``target_layer``, ``normalize`` (as :func:`layer_cam`),
    ``batch_size``.
    """
    normalize = bool(options.pop("normalize", True))
    batch_size = _check_batch(options.pop("batch_size", 32))
    layers = _layers(model, images, options)
    _reject_unknown("ablationcam", options)
    acts, _, classes, mask, logits = activations_and_grads(model, images, layers, target,
                                                           grads=False)
    base = target_scores(logits, classes, mask).float().cpu()  # (N,)
    maps = []
    channels: dict[str, Tensor] = {}
    for layer, a in zip(layers, acts):
        n, c = a.shape[:2]
        ablated = torch.empty(n, c)

        def hook(module, args, out):
            # Row r of the batch has channel channels["k"][r] zeroed.
            k = channels["k"]
            out = out.clone()
            out[torch.arange(k.numel(), device=out.device), k.to(out.device)] = 0
            return out

        with ModelGuard(model) as guard, torch.no_grad():
            guard.forward_hook(layer, hook)
            for i in range(n):
                for k0 in range(0, c, batch_size):
                    k1 = min(c, k0 + batch_size)
                    channels["k"] = torch.arange(k0, k1)
                    batch = images[i:i + 1].expand(k1 - k0, *images.shape[1:])
                    m = None if mask is None else mask[i:i + 1].expand(k1 - k0, *mask.shape[1:])
                    ablated[i, k0:k1] = _scores_of(model, batch, classes[i].expand(k1 - k0),
                                                   m).cpu()
        drop = base[:, None] - ablated
        weights = torch.where(base[:, None] != 0, drop / torch.where(base[:, None] != 0,
                              base[:, None], torch.ones_like(base[:, None])), drop)
        maps.append(torch.relu((weights.to(a.device)[:, :, None, None] * a.float()).sum(1)))
    return combine_layer_maps(maps, images, normalize)

