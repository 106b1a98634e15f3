"""Excitation backprop (Zhang et al., ECCV 2016 / IJCV 2018): marginal winning probability.

A top-down signal starts as a probability distribution on the output (one-hot on the target
class; for segmentation, where the score is the sum of the class's logits over the mask, the
excitation rule applied to that sum: each masked pixel gets its share of the positive logits,
uniform over the mask if none is positive) and is passed down
layer by layer. Through a layer ``y_j = sum_i w_ij x_i`` with non-negative inputs ``x`` (after a
ReLU), the excitation rule gives each input its share of every output it excites::

    P(x_i) = sum_j P(y_j) * x_i w_ij^+ / sum_i' x_i' w_i'j^+

so the total probability is conserved (biases and negative weights take no share). Element-wise
layers (ReLU, batch norm, dropout, ...) pass it through, max pooling sends it to the winner,
average pooling / bilinear upsampling / means use the same rule with their own (positive)
weights, and a sum of branches splits it in proportion to the branches' positive parts.

Contrastive MWP (``contrastive=True``) also propagates the *dual* of the target unit (the same
unit with negated classifier weights) and keeps ``relu(MWP_target - MWP_dual)`` at ``layer``.

The network is traced with :func:`torch.fx.symbolic_trace` and each graph node gets an
explicit rule (a small local computation on the recorded forward values); torch's autograd
functions are never replaced. The map is the per-pixel sum of the probability at the output
of ``layer``, upsampled to the input and min-max normalized.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

import pyseg.nn as pnn
import pyseg.ops
from pyseg.interpret.core import (
    InterpretError,
    ModelGuard,
    combine_layer_maps,
    default_layer,
    layer_name,
    logits_of,
    resolve_layer,
    resolve_layers,
    resolve_targets,
)

__all__ = ["excitation_backprop", "excitation_masses"]

# ---- rule tables -----------------------------------------------------------------------------

_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.PReLU, nn.Sigmoid, nn.Tanh, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm,
    nn.InstanceNorm2d, nn.LayerNorm, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity,
    nn.Flatten, nn.Unflatten,
)
_WINNER_MODULES = (nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool1d, nn.MaxUnpool2d,
                   pnn.MaxUnpool2d)
_POSLIN_MODULES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool1d)
_WEIGHTED_MODULES = (nn.Conv2d, nn.Conv1d, nn.Linear, nn.ConvTranspose2d)

_PASS_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, torch.sigmoid, torch.tanh,
    F.dropout, F.dropout2d, F.batch_norm, torch.flatten, torch.reshape, torch.squeeze,
    torch.unsqueeze, torch.clone,
}
_PASS_METHODS = {
    "relu", "relu_", "sigmoid", "tanh", "view", "reshape", "flatten", "contiguous", "squeeze",
    "unsqueeze", "clone", "view_as", "reshape_as", "float", "to", "type_as",
}
_SELECT_FUNCTIONS = {
    F.max_pool2d, F.adaptive_max_pool2d, torch.cat, torch.stack, torch.permute,
    torch.transpose, operator.getitem, torch.amax, F.pad, F.max_pool2d_with_indices,
    F.max_unpool2d, pyseg.ops.max_unpool2d,
}
_SELECT_METHODS = {"permute", "transpose", "amax", "__getitem__"}
_POSLIN_FUNCTIONS = {
    F.avg_pool2d, F.adaptive_avg_pool2d, torch.mean, torch.sum, F.interpolate,
}
_POSLIN_METHODS = {"mean", "sum"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_", "__add__", "__iadd__"}
_MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul, operator.truediv, torch.div}
_MUL_METHODS = {"mul", "mul_", "div", "div_"}


def _safe_div(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(a))


def _vjp(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    with torch.enable_grad():
        xv = x.detach().requires_grad_(True)
        y = fn(xv)
        (g,) = torch.autograd.grad(y, xv, v.reshape(y.shape), allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _excite(fn: Callable[[Tensor], Tensor], x: Tensor, p: Tensor) -> Tensor:
    """The excitation rule for a linear map ``fn`` with non-negative weights."""
    xp = x.clamp_min(0)
    z = fn(xp).detach()
    return xp * _vjp(fn, xp, _safe_div(p.reshape(z.shape), z))


# Rules for custom parameter-free modules kept whole when their own code cannot be traced
# (e.g. shape-dependent padding); "winner" = max-like, "excite" = positive linear, "pass" =
# element-wise. Users extend it with ``rules={ClassOrName: rule}``.
DEFAULT_RULES: dict[str, str] = {"_SameMaxPool": "winner", "Rescale": "excite"}
_RULES = ("winner", "excite", "pass")


def _custom_leaves(model: nn.Module) -> tuple[nn.Module, ...]:
    return tuple(
        m for m in model.modules()
        if m is not model and next(m.children(), None) is None
        and not type(m).__module__.startswith("torch.")
        and next(m.parameters(recurse=False), None) is None
    )


def _call_node(root: nn.Module, n: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Run the call of node ``n`` on concrete ``args`` / ``kwargs``."""
    if n.op == "call_module":
        return root.get_submodule(n.target)(*args, **kwargs)
    if n.op == "call_function":
        return n.target(*args, **kwargs)
    if n.op == "call_method":
        self_, *rest = args
        return getattr(self_, n.target)(*rest, **kwargs)
    raise AssertionError(n.op)


class _ConcreteProxy(fx.Proxy):
    """A proxy that also knows its value on the images being explained, so the model's
    Python control flow on shapes (``if h % 32:``, ``for i in range(x.shape[1])``) runs as it
    does for these images and the graph is specialized to them."""

    def _value(self) -> Any:
        return self.tracer.concrete[self.node]

    def __bool__(self) -> bool:
        return bool(self._value())

    def __index__(self) -> int:
        return operator.index(self._value())

    def __int__(self) -> int:
        return int(self._value())

    def __len__(self) -> int:
        return len(self._value())

    def __iter__(self):
        return iter([self[i] for i in range(len(self._value()))])


class _Tracer(fx.Tracer):
    """``torch.fx`` tracing that evaluates every node on the real inputs as it records it."""

    def __init__(self, leaves: tuple[nn.Module, ...], inputs: tuple[Any, ...]) -> None:
        super().__init__()
        self._leaves = leaves
        self._inputs = list(inputs)
        self.concrete: dict[fx.Node, Any] = {}  # live values, as the model computes them
        # Copies of the values: later in-place ops (ReLU(inplace=True), +=) must not change
        # what the propagation reads. The trace is the one forward pass of the method.
        self.recorded: dict[fx.Node, Any] = {}
        self._evaluating = False  # inside _evaluate: run modules for real, record nothing

    def call_module(self, m, forward, args, kwargs):
        if self._evaluating:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._evaluating:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # Subclasses of conv/linear (e.g. with "same" padding computed from the input shape)
        # stay whole: their rule runs their own forward. pyseg.nn modules are primitives.
        return (any(m is leaf for leaf in self._leaves) or isinstance(m, _WEIGHTED_MODULES)
                or type(m).__module__.startswith("pyseg.nn")
                or super().is_leaf_module(m, qualname))

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None) -> fx.Node:
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if kind != "output":
            value = self._evaluate(node)
            self.concrete[node] = value
            self.recorded[node] = value.detach().clone() if isinstance(value, Tensor) else value
        return node

    def _evaluate(self, n: fx.Node) -> Any:
        if n.op == "placeholder":
            if not self._inputs:
                raise InterpretError("excitation-backprop: the model takes more than one input")
            return self._inputs.pop(0)
        if n.op == "get_attr":
            obj: Any = self.root
            for atom in n.target.split("."):
                obj = getattr(obj, atom)
            return obj
        args = fx.node.map_arg(n.args, self.concrete.__getitem__)
        kwargs = fx.node.map_arg(n.kwargs, self.concrete.__getitem__)
        self._evaluating = True
        try:
            return _call_node(self.root, n, args, kwargs)
        finally:
            self._evaluating = False


def _node_label(gm: fx.GraphModule, n: fx.Node) -> str:
    if n.op == "call_module":
        return f"{n.target!r} ({type(gm.get_submodule(n.target)).__name__})"
    target = getattr(n.target, "__name__", str(n.target))
    return f"{n.name!r} ({n.op} {target})"


class _Propagator:
    def __init__(self, gm: fx.GraphModule, values: dict[fx.Node, Any],
                 rules: dict[str, str] | None = None) -> None:
        self.gm = gm
        self.values = values
        self.rules = rules or {}

    def _tensor_inputs(self, n: fx.Node) -> list[fx.Node]:
        seen: list[fx.Node] = []
        for a in n.all_input_nodes:
            v = self.values.get(a)
            if isinstance(v, (tuple, list)) and any(isinstance(t, Tensor) for t in v):
                v = next(t for t in v if isinstance(t, Tensor))  # e.g. (pooled, indices)
            if (a not in seen and isinstance(v, Tensor) and v.is_floating_point()
                    and a.op != "get_attr"):
                seen.append(a)
        return seen

    def _call_with(self, n: fx.Node, node: fx.Node, x: Tensor) -> Any:
        args = fx.node.map_arg(n.args, lambda a: x if a is node else self.values[a])
        kwargs = fx.node.map_arg(n.kwargs, lambda a: x if a is node else self.values[a])
        return _call_node(self.gm, n, args, kwargs)

    def _fn(self, n: fx.Node, node: fx.Node, component: int | None = None
            ) -> Callable[[Tensor], Tensor]:
        def fn(x: Tensor) -> Tensor:
            out = self._call_with(n, node, x)
            if component is not None:
                out = out[component]
            if not isinstance(out, Tensor):
                raise InterpretError(
                    f"excitation-backprop: layer {_node_label(self.gm, n)} does not return a tensor"
                )
            return out
        return fn

    def unsupported(self, n: fx.Node, why: str = "") -> InterpretError:
        return InterpretError(
            f"excitation-backprop: unsupported layer {_node_label(self.gm, n)}"
            + (f": {why}" if why else "")
            + "; supported: conv/linear, ReLU-like and normalization layers, max/avg pooling, "
            "bilinear/nearest upsampling, reshapes, concatenation and residual sums"
        )

    def weighted(self, m: nn.Module, sign: float = 1.0) -> Callable[[Tensor], Tensor]:
        """The layer with weights ``(sign * W)^+`` and no bias."""
        # The module's own forward (subclasses may pad or reshape first) with substituted
        # parameters: nothing on the module changes.
        params = {"weight": (sign * m.weight.detach()).clamp_min(0)}
        if getattr(m, "bias", None) is not None:
            params["bias"] = torch.zeros_like(m.bias)
        return lambda x: torch.func.functional_call(m, params, (x,))

    def step(self, n: fx.Node, p: Tensor | dict[int, Tensor], sign: float = 1.0,
             component: int | None = None) -> list[tuple[fx.Node, Any]]:
        """Distribute the probability ``p`` at node ``n`` to its tensor inputs. A node that
        returns a tuple (max pooling with indices) holds ``{element index: probability}``."""
        if isinstance(p, dict):
            return [r for k, pk in p.items() for r in self.step(n, pk, sign, component=k)]
        ins = self._tensor_inputs(n)
        if not ins:
            return []
        if (n.op == "call_function" and n.target is operator.getitem
                and isinstance(self.values[ins[0]], (tuple, list))):
            return [(ins[0], {n.args[1]: p})]
        if n.op == "call_module":
            m = self.gm.get_submodule(n.target)
            x = self.values[ins[0]]
            if len(ins) != 1:
                raise self.unsupported(n, "more than one tensor input")
            if isinstance(m, _WEIGHTED_MODULES):
                return [(ins[0], _excite(self.weighted(m, sign), x, p))]
            if isinstance(m, _PASS_MODULES):
                return [(ins[0], self._pass(n, x, p))]
            if isinstance(m, _WINNER_MODULES):
                if getattr(m, "return_indices", False) and component != 0:
                    raise self.unsupported(n, "return_indices=True")
                return [(ins[0], _vjp(self._fn(n, ins[0], component), x, p))]
            if isinstance(m, _POSLIN_MODULES):
                return [(ins[0], _excite(self._fn(n, ins[0], component), x, p))]
            if isinstance(m, (nn.Upsample, pnn.Upsample)) and m.mode in ("nearest", "bilinear"):
                return [(ins[0], _excite(self._fn(n, ins[0], component), x, p))]
            rule = self.rules.get(type(m).__name__)
            if rule == "winner":
                return [(ins[0], _vjp(self._fn(n, ins[0], component), x, p))]
            if rule == "excite":
                return [(ins[0], _excite(self._fn(n, ins[0], component), x, p))]
            if rule == "pass":
                return [(ins[0], self._pass(n, x, p))]
            raise self.unsupported(n, f"pass rules={{{type(m).__name__!r}: 'winner' | 'excite' "
                                   "| 'pass'}} if it is max-like, positive-linear or element-wise")
        if n.op not in ("call_function", "call_method"):
            raise self.unsupported(n)
        t = n.target
        is_fn = n.op == "call_function"
        if (is_fn and t in _PASS_FUNCTIONS) or (not is_fn and t in _PASS_METHODS):
            return [(ins[0], self._pass(n, self.values[ins[0]], p))]
        if (is_fn and t in _SELECT_FUNCTIONS) or (not is_fn and t in _SELECT_METHODS):
            return [(a, _vjp(self._fn(n, a, component), self.values[a], p)) for a in ins]
        if (is_fn and t in _POSLIN_FUNCTIONS) or (not is_fn and t in _POSLIN_METHODS):
            if t is F.interpolate:
                mode = n.kwargs.get("mode", n.args[3] if len(n.args) > 3 else "nearest")
                if mode not in ("nearest", "bilinear"):
                    raise self.unsupported(n, f"mode {mode!r} has negative weights")
            return [(ins[0], _excite(self._fn(n, ins[0], component), self.values[ins[0]], p))]
        if (is_fn and t in _ADD_FUNCTIONS) or (not is_fn and t in _ADD_METHODS):
            if n.kwargs.get("alpha", 1) != 1:
                raise self.unsupported(n, "add with alpha")
            pos = [self.values[a].clamp_min(0).expand_as(p) for a in ins]
            total = sum(pos)
            out = []
            for a, xp in zip(ins, pos):
                share = p * _safe_div(xp, total)
                out.append((a, _unbroadcast(share, self.values[a].shape)))
            return out
        if (is_fn and t in _MUL_FUNCTIONS) or (not is_fn and t in _MUL_METHODS):
            # Multiplication by a non-negative constant (a number or a buffer): a positive
            # linear map of the one traced input.
            consts = [a for a in n.all_input_nodes if a not in ins] + [
                a for a in n.args if isinstance(a, (int, float))
            ]
            if len(ins) != 1 or not consts:
                raise self.unsupported(n, "product of two activations")
            for c in consts:
                cv = self.values[c] if isinstance(c, fx.Node) else torch.tensor(float(c))
                if (torch.as_tensor(cv) < 0).any():
                    raise self.unsupported(n, "multiplication by a negative constant")
            return [(ins[0], _excite(self._fn(n, ins[0], component), self.values[ins[0]], p))]
        raise self.unsupported(n)

    def _pass(self, n: fx.Node, x: Tensor, p: Tensor) -> Tensor:
        if p.numel() != x.numel():
            raise self.unsupported(n, "element-wise pass-through with a change of size")
        return p.reshape(x.shape)


def _merge(a: Any, b: Any) -> Any:
    """Sum two probabilities of one node (tensors, or per-element dicts of a tuple node)."""
    if isinstance(a, dict):
        return {k: _merge(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k))
                for k in a.keys() | b.keys()}
    return a + b


def _unbroadcast(t: Tensor, shape: torch.Size) -> Tensor:
    while t.dim() > len(shape):
        t = t.sum(0)
    for i, s in enumerate(shape):
        if s == 1 and t.shape[i] != 1:
            t = t.sum(i, keepdim=True)
    return t


def _layer_node(gm: fx.GraphModule, name: str) -> fx.Node:
    last = None
    for n in gm.graph.nodes:
        called = n.op == "call_module" and n.target == name
        inside = bool(name) and name in (n.meta.get("nn_module_stack") or {})
        if called or inside:
            last = n
    if last is None:
        raise InterpretError(
            f"excitation-backprop: layer {name!r} does not appear in the traced model")
    return last


def excitation_masses(
    model: nn.Module,
    images: Tensor,
    target: Any = None,
    *,
    layer: nn.Module | str | None = None,
    contrastive: bool = False,
    leaf_modules: tuple[nn.Module, ...] = (),
    rules: dict[Any, str] | None = None,
) -> OrderedDict[str, Tensor]:
    """Propagate the winning probability from the output down to ``layer`` and return the
    probability at every node visited, ``{node name: Tensor shaped like the node's value}``, the
    last entry being ``layer``'s output. Without ``contrastive`` each entry sums to (at most) 1
    per image when no branch splits the flow.
    """
    if layer is None:
        layer = default_layer(model, images)
    layer = resolve_layer(model, layer)
    name = layer_name(model, layer)
    all_rules = dict(DEFAULT_RULES)
    for key, rule in (rules or {}).items():
        if rule not in _RULES:
            raise InterpretError(f"excitation-backprop: rule {rule!r} is not one of {_RULES}")
        all_rules[key if isinstance(key, str) else key.__name__] = rule
    with ModelGuard(model), torch.no_grad():
        try:
            try:
                tracer = _Tracer(leaf_modules, (images,))
                graph = tracer.trace(model)
            except Exception:  # noqa: BLE001
                # Keep custom parameter-free modules whole (their code may do what tracing
                # cannot follow, e.g. call a C++ op on a proxy).
                tracer = _Tracer(tuple(leaf_modules) + _custom_leaves(model), (images,))
                graph = tracer.trace(model)
            gm = fx.GraphModule(model, graph)
        except Exception as e:
            raise InterpretError(
                f"excitation-backprop needs a model torch.fx can trace ({type(e).__name__}: {e})"
            ) from e
        values = tracer.recorded
        out_node = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
        logits = logits_of(fx.node.map_arg(out_node.args[0], values.__getitem__)).detach()
        layer_node = _layer_node(gm, name)
        top = _find_logits_node(out_node, values, logits)
        classes, mask = resolve_targets(logits, target)
        n_img = logits.shape[0]
        idx = torch.arange(n_img, device=logits.device)
        p0 = torch.zeros_like(logits)
        if logits.dim() == 2:
            p0[idx, classes] = 1.0
        else:
            # The score unit sums the class's logits over the mask; the excitation rule gives
            # each pixel its share of the positive ones (uniform where none is positive).
            m = mask.to(logits.dtype)
            share = logits[idx, classes].clamp_min(0) * m
            none = share.flatten(1).sum(1) == 0
            share[none] = m[none]
            p0[idx, classes] = share / share.flatten(1).sum(1).clamp_min(1e-30)[:, None, None]

        prop = _Propagator(gm, values, all_rules)
        masses: dict[fx.Node, Tensor] = {top: p0}
        order = list(gm.graph.nodes)
        start = order.index(top)
        if contrastive:
            if top.op != "call_module" or not isinstance(
                gm.get_submodule(top.target), _WEIGHTED_MODULES
            ):
                raise InterpretError(
                    "excitation-backprop: contrastive=True needs a model whose output comes from "
                    f"a conv or linear layer, not {_node_label(gm, top)}"
                )
            if top is layer_node:
                raise InterpretError(
                    "excitation-backprop: contrastive needs a layer below the output")
            (x_node,) = prop._tensor_inputs(top)
            m_top = gm.get_submodule(top.target)
            x = values[x_node]
            pos = _excite(prop.weighted(m_top, 1.0), x, p0)
            neg = _excite(prop.weighted(m_top, -1.0), x, p0)
            masses = {top: p0, x_node: pos - neg}  # the rules below are linear in P
            start = order.index(x_node)

        visited: OrderedDict[str, Tensor] = OrderedDict()
        for n in reversed(order[: start + 1]):
            if n not in masses:
                continue
            p = masses.pop(n)
            visited[n.name] = p
            if n is layer_node:
                break
            if n.op == "placeholder":
                continue
            for a, pa in prop.step(n, p):
                masses[a] = _merge(masses[a], pa) if a in masses else pa
        else:
            raise InterpretError(
                f"excitation-backprop: no probability reached layer {name!r} (is it on the path "
                "to the output?)"
            )
    return visited


def _find_logits_node(out_node: fx.Node, values: dict[fx.Node, Any], logits: Tensor) -> fx.Node:
    cands = [a for a in out_node.all_input_nodes]
    for a in cands:
        v = values.get(a)
        if isinstance(v, Tensor) and v.shape == logits.shape and torch.equal(v, logits):
            return a
    raise InterpretError("excitation-backprop: cannot locate the logits in the traced graph")


def excitation_backprop(
    model: nn.Module,
    images: Tensor,
    target: Any = None,
    *,
    layer: Any = None,
    target_layer: Any = None,
    contrastive: bool = False,
    rules: dict[Any, str] | None = None,
    normalize: bool = True,
) -> Tensor:
    """Excitation-backprop heatmaps ``(N, H, W)`` in [0, 1] (see the module docstring).

    Options: ``layer`` / ``target_layer`` (where the map is read, a module, a dotted name or
    a list of them, combined as :func:`pyseg.interpret.core.combine_layer_maps` does; default:
    the last conv layer with its activation), ``contrastive`` (contrastive MWP),
    ``normalize`` (False: the raw winning probabilities summed over channels).
    """
    if layer is not None and target_layer is not None:
        raise InterpretError("give either layer= or target_layer=, not both")
    layer = layer if layer is not None else target_layer
    layers: list[Any] = [None] if layer is None else resolve_layers(model, layer)
    maps = []
    for one in layers:
        masses = excitation_masses(model, images, target, layer=one, contrastive=contrastive,
                                   rules=rules)
        p = next(reversed(masses.values()))
        if p.dim() != 4:
            raise InterpretError(
                f"excitation-backprop: the layer output has shape {tuple(p.shape)}; a "
                "(N, C, H, W) feature map is needed"
            )
        m = p.sum(1)
        maps.append(m.clamp_min(0) if contrastive else m)
    return combine_layer_maps(maps, images, normalize)
