"""Helpers shared by the interpreters: layer resolution, a context that leaves the model as it
was found, target scoring, normalization and resizing of heatmaps.

Every interpreter follows the same contract (see :class:`pyseg.registry.Interpreter`)::

    heatmaps = fn(model, images, target=None, **options)   # Tensor[N, H, W] in [0, 1]
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # typing.Self needs Python 3.11
    from typing_extensions import Self

__all__ = [
    "ACTIVATIONS",
    "InterpretError",
    "ModelGuard",
    "activations_and_grads",
    "combine_layer_maps",
    "default_layer",
    "finish_map",
    "layer_name",
    "logits_of",
    "minmax_normalize",
    "pick_layers",
    "resolve_layer",
    "resolve_layers",
    "resolve_targets",
    "target_scores",
    "upsample_to",
]

# Element-wise modules that directly follow a convolution and belong to "the last conv layer"
# when choosing a default layer (the rectified feature maps, as in Selvaraju et al.).
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.PReLU,
)
_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)


class InterpretError(ValueError):
    """The model, layer or target does not fit the requested interpretation method.

    A ``ValueError`` whose message names what does not fit.

    Example::

        >>> from pyseg.interpret import InterpretError, resolve_layer
        >>> try:
        ...     resolve_layer(nn.Sequential(nn.Conv2d(3, 4, 1)), "head")
        ... except InterpretError as e:
        ...     print(e)
        layer 'head' not found in Sequential (last layers: 0)
    """


# --------------------------------------------------------------------------------------------
# Model state: hooks, modes and gradients are restored whatever happens.
# --------------------------------------------------------------------------------------------


class ModelGuard(contextlib.AbstractContextManager):
    """Put ``model`` in eval mode and collect hook handles; on exit (even on an exception)
    remove every hook registered through :meth:`add` and restore each module's training flag.

    Parameter ``.grad`` fields are never written by the interpreters (they differentiate with
    :func:`torch.autograd.grad` with respect to activations only); the guard also checks that
    and restores them if a user callback changed them.

    Args:
        model: the model to guard.
        eval_mode: put it in eval mode on entry (False: leave the modes as they are).

    Example::

        >>> from pyseg.interpret import ModelGuard
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
        >>> seen = []
        >>> with ModelGuard(net) as guard:
        ...     _ = guard.forward_hook(net[0], lambda m, args, out: seen.append(out.shape))
        ...     _ = net(torch.rand(1, 3, 2, 2))
        ...     print(net.training)
        False
        >>> net.training, len(net[0]._forward_hooks), seen
        (True, 0, [torch.Size([1, 4, 2, 2])])
    """

    def __init__(self, model: nn.Module, eval_mode: bool = True) -> None:
        self.model = model
        self.eval_mode = eval_mode
        self._handles: list[Any] = []

    def __enter__(self) -> Self:
        self._modes = [(m, m.training) for m in self.model.modules()]
        self._grads = [(p, p.grad) for p in self.model.parameters()]
        if self.eval_mode:
            self.model.eval()
        return self

    def add(self, handle: Any) -> Any:
        """Remember a hook handle (from ``register_*_hook``) for removal on exit."""
        self._handles.append(handle)
        return handle

    def forward_hook(self, module: nn.Module, fn) -> Any:
        """``module.register_forward_hook(fn)``, removed on exit; returns the handle."""
        return self.add(module.register_forward_hook(fn))

    def forward_pre_hook(self, module: nn.Module, fn) -> Any:
        """``module.register_forward_pre_hook(fn)``, removed on exit; returns the handle."""
        return self.add(module.register_forward_pre_hook(fn))

    def __exit__(self, *exc) -> None:
        while self._handles:
            self._handles.pop().remove()
        for m, mode in self._modes:
            m.training = mode
        for p, g in self._grads:
            if p.grad is not g:
                p.grad = g


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """The dotted name of ``layer`` inside ``model`` (``""`` for the model itself).

    Raises :class:`InterpretError` when ``layer`` is not a submodule of ``model``.

    Example::

        >>> from pyseg.interpret import layer_name
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> layer_name(net, net[2]), layer_name(net, net)
        ('2', '')
    """
    for name, m in model.named_modules():
        if m is layer:
            return name
    raise InterpretError(f"layer {type(layer).__name__} is not a submodule of the model")


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """Return the submodule of ``model`` given as ``layer``: a module or a dotted name
    (``"features.3"``).

    Raises :class:`InterpretError` for a name or module that is not in ``model`` (the message
    lists its last layers) and ``TypeError`` for anything else.

    Example::

        >>> from pyseg.interpret import resolve_layer
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> resolve_layer(net, "1")
        ReLU()
    """
    if isinstance(layer, nn.Module):
        layer_name(model, layer)  # validates membership
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be an nn.Module or a dotted name, got {type(layer).__name__}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        hint = ", ".join(names[-8:])
        raise InterpretError(
            f"layer {layer!r} not found in {type(model).__name__} (last layers: {hint})"
        ) from None


def resolve_layers(model: nn.Module, layer: Any) -> list[nn.Module]:
    """Return the submodules of ``model`` given as ``layer``: one module / dotted name or a
    list or tuple of them (see :func:`resolve_layer`).

    Example::

        >>> from pyseg.interpret import resolve_layers
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> [m is net[i] for i, m in zip((0, 2), resolve_layers(net, ["0", net[2]]))]
        [True, True]
        >>> resolve_layers(net, "1")
        [ReLU()]

    Raises:
        InterpretError: an empty list, or a name that is not a submodule.
        TypeError: an element that is neither a module nor a string.
    """
    items = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not items:
        raise InterpretError("layer: an empty list of layers")
    return [resolve_layer(model, item) for item in items]


def pick_layers(model: nn.Module, options: dict[str, Any]) -> list[nn.Module] | None:
    """Pop ``layer`` / ``target_layer`` (synonyms; a module, a dotted name or a list of them)
    from ``options`` and resolve them in ``model``; ``None`` when neither was given.
    Raises :class:`InterpretError` when both are given (or as :func:`resolve_layers`).

    Example: an interpreter reads its ``layer=`` option this way::

        >>> from pyseg.interpret import pick_layers
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> options = {"target_layer": "1", "alpha": 2}
        >>> pick_layers(net, options), options
        ([ReLU()], {'alpha': 2})
        >>> print(pick_layers(net, {}))
        None
    """
    layer = options.pop("layer", None)
    target_layer = options.pop("target_layer", None)
    if layer is not None and target_layer is not None:
        raise InterpretError("give either layer= or target_layer=, not both")
    layer = layer if layer is not None else target_layer
    return None if layer is None else resolve_layers(model, layer)


def _trace_leaves(model: nn.Module, images: Tensor
                  ) -> tuple[list[tuple[nn.Module, Tensor, Any]], Any]:
    """Run ``model`` once on ``images`` and return ``(module, first input, output)`` of every
    leaf module in execution order, and the model's output."""
    order: list[tuple[nn.Module, Tensor, Any]] = []
    with ModelGuard(model) as guard, torch.no_grad():
        for m in model.modules():
            if next(m.children(), None) is None:
                def hook(mod, args, out, _order=order):
                    _order.append((mod, args[0] if args else None, out))
                guard.forward_hook(m, hook)
        output = model(images)
    return order, output


def _rectified_end(order: list[tuple[nn.Module, Tensor, Any]], i: int) -> tuple[int, bool]:
    """Follow the normalization and activation modules that directly consume the output of
    ``order[i]``; return the index of the last one and whether an activation was reached."""
    chosen, prev_out = i, order[i][2]
    for j in range(i + 1, len(order)):
        m, inp, out = order[j]
        if not isinstance(m, ACTIVATIONS + _NORMS) or inp is not prev_out:
            break
        chosen, prev_out = j, out
        if isinstance(m, ACTIVATIONS):
            return chosen, True
    return chosen, False


def default_layer(model: nn.Module, images: Tensor) -> nn.Module:
    """The last rectified spatial feature map: the activation that ends the last convolution
    (with the normalization modules in between) whose output is rectified and spatial (more
    than one pixel), executed on ``images``.

    That is the classic choice (the features a following pooling layer or classifier sees)
    for plain convnets, and for residual networks it stays on the main path: the strided 1x1
    projection of a residual shortcut is often the last convolution executed, but its output
    is not rectified and is not the block's features. For a segmentation network the last
    convolutions are its classifier (per-pixel scores, then maybe an upsampling), which the
    rule skips the same way: a map taken at the scores would only restate the prediction.
    Without any rectified convolution output, the last convolution (extended to the
    normalization and activation modules that directly consume it).

    Found with one forward pass of the first image of ``images`` through ``model``. Raises
    :class:`InterpretError` for a model without a 2-D convolution.

    Example: the ReLU after the first convolution, not the 1x1 classifier::

        >>> from pyseg.interpret import default_layer
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> default_layer(net, torch.rand(1, 3, 8, 8))
        ReLU()
    """
    order, _ = _trace_leaves(model, images[:1])
    convs = [i for i, (m, _, out) in enumerate(order)
             if isinstance(m, nn.modules.conv._ConvNd) and isinstance(out, Tensor)
             and out.dim() == 4]
    if not convs:
        raise InterpretError(
            f"{type(model).__name__} has no 2-D convolution; pass layer=... explicitly"
        )
    rectified = []
    for i in reversed(convs):
        end, is_rectified = _rectified_end(order, i)
        if is_rectified:
            out = order[end][2]
            if out.shape[-2] * out.shape[-1] > 1:
                return order[end][0]
            rectified.append(end)
    # Only 1x1 rectified maps (a tiny input), or none at all.
    return order[rectified[0] if rectified else _rectified_end(order, convs[-1])[0]][0]


# --------------------------------------------------------------------------------------------
# Targets and scores
# --------------------------------------------------------------------------------------------


def logits_of(output: Any) -> Tensor:
    """The logits tensor of a model ``output``: a tensor, a mapping with ``"out"`` (or its
    first value), or a sequence whose first item is a tensor. Raises :class:`InterpretError`
    for anything else.

    Example: torchvision's segmentation models return ``{"out": ..., "aux": ...}``::

        >>> from pyseg.interpret import logits_of
        >>> logits = torch.rand(1, 2, 4, 4)
        >>> logits_of({"out": logits, "aux": None}) is logits, logits_of((logits,)) is logits
        (True, True)
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        if "out" in output:
            return output["out"]
        return next(iter(output.values()))
    if isinstance(output, Sequence) and output and isinstance(output[0], Tensor):
        return output[0]
    raise InterpretError(f"cannot find logits in a model output of type {type(output).__name__}")


def _as_class_tensor(target: Any, n: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(target, device=device).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise InterpretError(f"target has {t.numel()} class indices for {n} images")
    return t


def resolve_targets(logits: Tensor, target: Any = None) -> tuple[Tensor, Tensor | None]:
    """Turn ``target`` into ``(classes long[N], mask bool[N, H, W] or None)``.

    * classification logits ``(N, K)``: ``target`` is ``None`` (the predicted class), an int,
      or ``N`` ints; the mask is ``None``.
    * segmentation logits ``(N, K, H, W)``: ``target`` is ``None`` (per image, the class
      predicted on most pixels), an int / ``N`` ints, or ``(classes, mask)`` /
      ``{"class": ..., "mask": ...}`` with a bool mask ``(H, W)`` or ``(N, H, W)``. The default
      mask is the set of pixels predicted as the class.

    Raises :class:`InterpretError` for a class outside ``[0, K)``, a wrong number of classes,
    a mask of the wrong shape, a mask for a classifier, or ``logits`` of another rank.

    Example::

        >>> from pyseg.interpret import resolve_targets
        >>> resolve_targets(torch.tensor([[0.1, 2.0], [3.0, 0.0]]))
        (tensor([1, 0]), None)
        >>> logits = torch.zeros(1, 2, 1, 3)
        >>> logits[0, 1, 0, 1:] = 1          # class 1 on two pixels of three
        >>> resolve_targets(logits)
        (tensor([1]), tensor([[[False,  True,  True]]]))
    """
    n = logits.shape[0]
    num_classes = logits.shape[1]
    mask = None
    if isinstance(target, Mapping):
        target, mask = target.get("class"), target.get("mask")
    elif isinstance(target, tuple) and len(target) == 2 and logits.dim() == 4:
        target, mask = target
    if logits.dim() == 2:
        if mask is not None:
            raise InterpretError("a pixel mask only makes sense for segmentation models")
        classes = logits.argmax(1) if target is None else _as_class_tensor(target, n, logits.device)
    elif logits.dim() == 4:
        pred = logits.argmax(1)
        if target is None:
            counts = F.one_hot(pred.flatten(1), num_classes).sum(1)
            classes = counts.argmax(1)
        else:
            classes = _as_class_tensor(target, n, logits.device)
        if mask is None:
            mask = pred == classes[:, None, None]
        else:
            mask = torch.as_tensor(mask, device=logits.device).bool()
            if mask.dim() == 2:
                mask = mask.expand(n, *mask.shape)
            if mask.shape != (n, *logits.shape[2:]):
                raise InterpretError(
                    f"target mask has shape {tuple(mask.shape)}, expected "
                    f"{(n, *logits.shape[2:])} or {tuple(logits.shape[2:])}"
                )
    else:
        raise InterpretError(
            f"model output has shape {tuple(logits.shape)}; expected (N, classes) for a "
            "classifier or (N, classes, H, W) for a segmentation model"
        )
    if ((classes < 0) | (classes >= num_classes)).any():
        raise InterpretError(f"target class out of range [0, {num_classes}): {classes.tolist()}")
    return classes, mask


def target_scores(logits: Tensor, classes: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image scores ``(N,)``: the logit of ``classes`` (one per image) for a classifier's
    ``logits``, or for a segmentation model the sum of the class's logits over ``mask`` (all
    pixels when None; see :func:`resolve_targets`).

    Example::

        >>> from pyseg.interpret import target_scores
        >>> target_scores(torch.tensor([[0.5, 2.0]]), torch.tensor([1]))
        tensor([2.])
        >>> logits = torch.arange(8.).reshape(1, 2, 2, 2)
        >>> target_scores(logits, torch.tensor([1]), torch.tensor([[[True, False], [False, True]]]))
        tensor([11.])
    """
    idx = torch.arange(logits.shape[0], device=logits.device)
    if logits.dim() == 2:
        return logits[idx, classes]
    class_maps = logits[idx, classes]  # (N, H, W)
    if mask is None:
        return class_maps.flatten(1).sum(1)
    return (class_maps * mask.to(class_maps.dtype)).flatten(1).sum(1)


# --------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------


def upsample_to(maps: Tensor, size: Sequence[int], mode: str = "bilinear") -> Tensor:
    """Resize ``(N, h, w)`` ``maps`` to ``size`` with ``mode`` (bilinear by default;
    ``align_corners=False`` for the linear modes); maps already at that size are returned
    as they are.

    Example::

        >>> from pyseg.interpret import upsample_to
        >>> upsample_to(torch.rand(2, 4, 4), (8, 6)).shape
        torch.Size([2, 8, 6])
        >>> upsample_to(torch.tensor([[[1., 2.]]]), (1, 4), mode="nearest")
        tensor([[[1., 1., 2., 2.]]])
    """
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[-2:]) == size:
        return maps
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(maps[:, None], size=size, mode=mode, **kwargs)[:, 0]


def finish_map(maps: Tensor, images: Tensor, normalize: bool = True) -> Tensor:
    """Upsample ``(N, h, w)`` maps to the input's size and, with ``normalize``, min-max scale
    each to [0, 1]; returned on the device and in the dtype of ``images``.

    Example::

        >>> from pyseg.interpret import finish_map
        >>> out = finish_map(torch.rand(2, 4, 4), torch.rand(2, 3, 16, 16, dtype=torch.float64))
        >>> out.shape, out.dtype, out.amin((1, 2)).tolist(), out.amax((1, 2)).tolist()
        (torch.Size([2, 16, 16]), torch.float64, [0.0, 0.0], [1.0, 1.0])
    """
    maps = upsample_to(maps.float(), images.shape[-2:])
    if normalize:
        maps = minmax_normalize(maps)
    return maps.to(device=images.device, dtype=images.dtype)


def combine_layer_maps(maps: Sequence[Tensor], images: Tensor, normalize: bool = True) -> Tensor:
    """One heatmap per image from the per-layer maps ``[(N, h_l, w_l), ...]``.

    As pytorch-grad-cam does: each layer's map is min-max scaled at its own resolution,
    upsampled (bilinear) to the input, the layers averaged and the mean min-max scaled again.
    With ``normalize=False`` the raw maps are upsampled and averaged, nothing is scaled (a
    single layer gives its map in the method's own units). Maps already at the input size
    are not resampled. The result is on the device and in the dtype of ``images``.

    Example: a coarse and a fine map whose scaled means agree::

        >>> from pyseg.interpret import combine_layer_maps
        >>> coarse, fine = torch.tensor([[[0., 1.]]]), torch.tensor([[[0., 0., 5., 5.]]])
        >>> combine_layer_maps([coarse, fine], torch.zeros(1, 3, 1, 4))
        tensor([[[0.0000, 0.1250, 0.8750, 1.0000]]])
    """
    if len(maps) == 1:
        return finish_map(maps[0], images, normalize)
    size = images.shape[-2:]
    per_layer = [upsample_to(minmax_normalize(m.float()) if normalize else m.float(), size)
                 for m in maps]
    mean = torch.stack(per_layer).mean(0)
    out = minmax_normalize(mean) if normalize else mean
    return out.to(device=images.device, dtype=images.dtype)


def activations_and_grads(
    model: nn.Module, images: Tensor, layers: Sequence[nn.Module], target: Any = None,
    grads: bool = True,
) -> tuple[list[Tensor], list[Tensor] | None, Tensor, Tensor | None, Tensor]:
    """Run ``model`` on ``images`` once and return, for every layer in ``layers``, its output
    and (``grads=True``) the gradient of the summed per-image target scores (see
    :func:`target_scores`) with respect to it; also ``classes``, ``mask`` (see
    :func:`resolve_targets`) and the detached logits.

    Each layer's output is kept and a copy goes on, so that in-place operations downstream
    (``ReLU(inplace=True)``) cannot rewrite the activations read here. Gradients are taken
    with :func:`torch.autograd.grad` (no parameter ``.grad`` is written).

    ``target`` is as for :func:`resolve_targets`. Returns
    ``(activations, gradients or None, classes, mask, logits)``.

    Raises:
        InterpretError: a layer that is not run, that returns no tensor or no ``(N, C, H,
            W)`` map, or a target that does not fit the output.

    Example: the gradient of a 1x1 classifier's summed class-0 scores is its weight::

        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> from pyseg.interpret import activations_and_grads
        >>> acts, grads, classes, mask, logits = activations_and_grads(
        ...     net, torch.rand(1, 3, 4, 4), [net[1]], target=(0, torch.ones(4, 4, dtype=bool)))
        >>> acts[0].shape, classes
        (torch.Size([1, 4, 4, 4]), tensor([0]))
        >>> torch.allclose(grads[0][0, :, 0, 0], net[2].weight[0, :, 0, 0])
        True
    """
    store: dict[int, Tensor] = {}

    def make_hook(i: int, layer: nn.Module):
        def hook(module, args, out):
            if not isinstance(out, Tensor):
                raise InterpretError(f"layer {layer_name(model, layer)!r} returns "
                                     f"{type(out).__name__}, not a tensor")
            if grads and not out.requires_grad:
                out = out.detach().requires_grad_(True)  # frozen model: start the graph here
            store[i] = out
            return out.clone()
        return hook

    with ModelGuard(model) as guard, torch.set_grad_enabled(grads):
        for i, layer in enumerate(layers):
            guard.forward_hook(layer, make_hook(i, layer))
        logits = logits_of(model(images))
        for i, layer in enumerate(layers):
            if i not in store:
                raise InterpretError(f"layer {layer_name(model, layer)!r} was not run by the "
                                     "model")
        classes, mask = resolve_targets(logits.detach(), target)
        acts = [store[i] for i in range(len(layers))]
        for layer, a in zip(layers, acts):
            if a.dim() != 4:
                raise InterpretError(
                    f"layer {layer_name(model, layer)!r} outputs shape {tuple(a.shape)}; "
                    "a (N, C, H, W) feature map is needed"
                )
        gs: list[Tensor] | None = None
        if grads:
            score = target_scores(logits, classes, mask).sum()
            needs = [a.requires_grad for a in acts]
            got: Sequence[Tensor | None] = (
                torch.autograd.grad(score, [a for a in acts if a.requires_grad],
                                    allow_unused=True)
                if score.requires_grad and any(needs) else [None] * sum(needs))
            it = iter(got)
            # A layer the score does not depend on gets zero gradients.
            found = [(next(it) if need else None) for need in needs]
            gs = [torch.zeros_like(a) if g is None else g.detach() for a, g in zip(acts, found)]
    return [a.detach() for a in acts], gs, classes, mask, logits.detach()


def minmax_normalize(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale each ``(H, W)`` map of ``maps`` (``(N, H, W)``) to [0, 1]; a map whose range is
    at most ``eps`` (constant) becomes all zeros.

    Example::

        >>> from pyseg.interpret import minmax_normalize
        >>> minmax_normalize(torch.tensor([[[2., 4.], [6., 10.]], [[3., 3.], [3., 3.]]]))
        tensor([[[0.0000, 0.2500],
                 [0.5000, 1.0000]],
        <BLANKLINE>
                [[0.0000, 0.0000],
                 [0.0000, 0.0000]]])
    """
    flat = maps.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    rng = hi - lo
    out = torch.where(rng > eps, (flat - lo) / rng.clamp_min(eps), torch.zeros_like(flat))
    return out.view_as(maps)
