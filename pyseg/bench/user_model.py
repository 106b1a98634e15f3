"""``pyseg bench --model MODULE:FACTORY|NAME``: the user's own network as it is against the
same network with pyseg's kernels (:func:`pyseg.nn.convert` and :func:`pyseg.kernels`),
forward and training step, timed by :func:`pyseg.bench.run` in one run.

* ``MODULE:FACTORY`` imports ``MODULE`` and calls ``FACTORY(**kwargs)`` (the user's own
  code, named on the command line; e.g.
  ``torchvision.models.segmentation:fcn_resnet50`` with
  ``{"weights": null, "weights_backbone": null}``).
* ``NAME`` is a registered pyseg architecture, built with torch's modules
  (:func:`pyseg.bench.models.torch_twin`), so that "as it is" means torch's kernels.

The two sides are the same weights: the converted side is a deep copy, converted. Before
timing, :func:`check` runs one forward and one training step of each, compares outputs and
gradients and records which calls went to pyseg (:class:`pyseg.routing.RoutingStats`).
The cases:

* ``fwd``: ``model.eval()`` under ``torch.no_grad()``; the outputs are compared again by the
  harness;
* ``train``: ``model.train()``, forward, loss, gradients of every trainable parameter
  (``torch.autograd.grad``; no optimizer, its cost is the same on both sides). The loss is
  the cross-entropy against a fixed random target for each ``(N, classes, H, W)`` output of
  the input's size, the mean square of any other floating output; torch's generator is
  reseeded first so both sides draw the same dropout masks. The harness compares the loss;
  the gradients were compared by :func:`check` (against the largest gradient of the
  network: some gradients are exactly 0 in exact arithmetic, e.g. biases followed by batch
  norm, and only rounding noise in float).
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyseg.bench.harness import CaseResult
from pyseg.registry import BenchmarkCase

__all__ = ["USER_MODEL_LABEL", "Agreement", "UserModel", "build", "check", "from_args",
           "model_cases", "ratio_table", "report"]

USER_MODEL_LABEL = "model"
# float32 through a deep network: the sides differ by summation order (pyseg's kernels add
# in another order than ATen's), which tens of layers amplify; a wrong index or weight moves
# a result by a sizable fraction of its scale. Checked on torchvision's and smp's networks
# in tests/nn (measured: outputs 4e-7, gradients 4e-6).
RTOL = {"fwd": 1e-3, "train": 1e-3}


@dataclass(frozen=True)
class UserModel:
    """What to build: ``spec`` (``MODULE:FACTORY`` or an architecture name), the factory's
    keyword arguments (``kwargs``) and the input shape ``(N, C, H, W)`` (``input_shape``).

    Example::

        >>> from pyseg.bench.user_model import UserModel
        >>> setup = UserModel("torch.nn:ConvTranspose2d", {"in_channels": 3, "out_channels": 2,
        ...                   "kernel_size": 3, "padding": 1}, (1, 3, 8, 8))
        >>> setup.name, setup.description
        ('ConvTranspose2d', 'ConvTranspose2d 1x3x8x8')
    """

    spec: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, int, int, int] = (1, 3, 256, 256)

    @property
    def name(self) -> str:
        """The factory's name (the part after ``:``), or the architecture name."""
        return self.spec.rpartition(":")[2] or self.spec

    @property
    def description(self) -> str:
        """The name and the input shape, as the tables show them."""
        return f"{self.name} {'x'.join(map(str, self.input_shape))}"


def _factory(spec: str) -> Callable[..., nn.Module]:
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"--model {spec}: cannot import {module_name!r}: {e}") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ValueError(f"--model {spec}: {module_name} has no callable {attr!r}")
        return factory  # type: ignore[no-any-return]
    from pyseg import registry
    from pyseg.bench.models import torch_twin

    try:
        registry.get_architecture(spec)
    except registry.UnknownNameError as e:
        raise ValueError(f"--model: {e.args[0]}") from None

    def build_registered(**kwargs: Any) -> nn.Module:
        return torch_twin(registry.create_model(spec, **kwargs))

    return build_registered


def build(setup: UserModel) -> nn.Module:
    """The network of ``setup`` as it is (seeded: every build has the same weights).

    Example::

        >>> from pyseg.bench.user_model import UserModel
        >>> setup = UserModel("torch.nn:ConvTranspose2d", {"in_channels": 3, "out_channels": 2,
        ...                   "kernel_size": 3, "padding": 1}, (1, 3, 8, 8))
        >>> from pyseg.bench.user_model import build
        >>> torch.equal(build(setup).weight, build(setup).weight)
        True

    Raises:
        ValueError: the module or factory cannot be found.
        TypeError: the factory does not return an ``nn.Module``.
    """
    factory = _factory(setup.spec)
    torch.manual_seed(0)
    model = factory(**setup.kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"--model {setup.spec}: the factory returned a "
                        f"{type(model).__name__}, not an nn.Module")
    return model


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list | tuple):
        return [t for item in obj for t in _tensors(item)]
    return []


def _loss(output: Any, target: torch.Tensor) -> torch.Tensor:
    terms = []
    for t in _tensors(output):
        if not t.is_floating_point():
            continue
        if t.dim() == 4 and t.shape[0] == target.shape[0] and t.shape[2:] == target.shape[1:]:
            terms.append(F.cross_entropy(t, target % t.shape[1]))
        else:
            terms.append(t.float().square().mean())
    if not terms:
        raise ValueError("the network returned no floating-point tensor to train on")
    return torch.stack([t.float() for t in terms]).sum()


def _forward(model: nn.Module, x: torch.Tensor) -> Any:
    model.eval()
    with torch.no_grad():
        return model(x)


def _train(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
           ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    model.train()
    torch.manual_seed(0)  # the same dropout masks on both sides
    params = [p for p in model.parameters() if p.requires_grad]
    loss = _loss(model(x), target)
    return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)


def _pyseg_side(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        import pyseg

        with pyseg.kernels():
            return fn(*args)

    return call


def _make_inputs(setup: UserModel) -> Callable[..., tuple[Any, ...]]:
    def make(device: torch.device, dtype: torch.dtype) -> tuple[Any, ...]:
        import pyseg

        original = build(setup).to(device=device, dtype=dtype)
        converted = pyseg.nn.convert(copy.deepcopy(original))
        g = torch.Generator().manual_seed(1)
        x = torch.rand(setup.input_shape, generator=g).to(device=device, dtype=dtype)
        n, _, h, w = setup.input_shape
        # Class indices for any class count: _loss takes them modulo the output's channels.
        target = torch.randint(0, 2**20, (n, h, w), generator=g).to(device)
        return original, converted, x, target

    return make


@dataclass
class Agreement:
    """What :func:`check` found: the conversion report, the calls of one forward and one
    training step of the converted network (``stats``), and the largest differences
    (relative to the reference's largest value) of the outputs (``output_diff``) and of the
    loss and gradients (``gradient_diff``). ``str()`` gives what ``pyseg bench --model``
    prints.

    Example: :func:`check` shows one.

        >>> import dataclasses
        >>> from pyseg.bench.user_model import Agreement
        >>> [f.name for f in dataclasses.fields(Agreement)]
        ['report', 'stats', 'output_diff', 'gradient_diff']
    """

    report: Any  # pyseg.nn.ConversionReport
    stats: Any  # pyseg.routing.RoutingStats
    output_diff: float
    gradient_diff: float

    def __str__(self) -> str:
        return "\n".join([
            "conversion (pyseg.nn.convert):",
            *("  " + line for line in str(self.report).splitlines()),
            "calls of one forward and one training step under pyseg.kernels():",
            *("  " + line for line in str(self.stats).splitlines()),
            (f"agreement with the network as it is: outputs {self.output_diff:.2g}, "
             f"gradients {self.gradient_diff:.2g} (max difference / largest value)"),
        ])


def _max_diff(ours: Sequence[torch.Tensor | None], ref: Sequence[torch.Tensor | None]) -> float:
    pairs = [(a, b) for a, b in zip(ours, ref, strict=True) if a is not None and b is not None]
    if not pairs:
        return 0.0
    scale = max(b.detach().abs().max().item() if b.numel() else 0.0 for _, b in pairs)
    diff = max((a.detach().double() - b.detach().double()).abs().max().item()
               if b.numel() else 0.0 for a, b in pairs)
    return diff / scale if scale > 0 else diff


def check(setup: UserModel, device: str | torch.device = "cpu",
          dtype: torch.dtype = torch.float32) -> Agreement:
    """One forward and one training step of the network as it is and converted (under
    :func:`pyseg.kernels`): what was converted, what went to pyseg, how far apart the two
    are, for ``setup`` on ``device`` in ``dtype``. Raises what building or running the
    network raises.

    Example::

        >>> from pyseg.bench.user_model import UserModel
        >>> setup = UserModel("torch.nn:ConvTranspose2d", {"in_channels": 3, "out_channels": 2,
        ...                   "kernel_size": 3, "padding": 1}, (1, 3, 8, 8))
        >>> from pyseg.bench.user_model import check
        >>> agreement = check(setup)
        >>> agreement.stats.to_pyseg, agreement.output_diff < 1e-5
        ({'conv_transpose2d': 2}, True)
    """
    import pyseg

    original, _, x, target = _make_inputs(setup)(torch.device(device), dtype)
    converted, report = pyseg.nn.convert(copy.deepcopy(original), report=True)
    with pyseg.kernels() as mode:
        ours_out = _tensors(_forward(converted, x))
        ours_loss, ours_grads = _train(converted, x, target)
    ref_out = _tensors(_forward(original, x))
    ref_loss, ref_grads = _train(original, x, target)
    return Agreement(report, mode.stats, _max_diff(ours_out, ref_out),
                     _max_diff([ours_loss, *ours_grads], [ref_loss, *ref_grads]))


def case_name(setup: UserModel, pass_: str) -> str:
    return f"{USER_MODEL_LABEL}/{setup.name}/{pass_}"


def model_cases(setup: UserModel) -> list[BenchmarkCase]:
    """Two cases, ``fwd`` and ``train``: the converted network under :func:`pyseg.kernels`
    ("pyseg") against the network as it is ("reference"), for ``setup``.

    Example::

        >>> from pyseg.bench.user_model import UserModel
        >>> setup = UserModel("torch.nn:ConvTranspose2d", {"in_channels": 3, "out_channels": 2,
        ...                   "kernel_size": 3, "padding": 1}, (1, 3, 8, 8))
        >>> from pyseg.bench.user_model import model_cases
        >>> [c.name for c in model_cases(setup)]
        ['model/ConvTranspose2d/fwd', 'model/ConvTranspose2d/train']
    """

    def fwd(which: int) -> Callable[..., Any]:
        return lambda original, converted, x, target: _forward((original, converted)[which], x)

    def train(which: int) -> Callable[..., Any]:
        # The loss only: the gradients are compared by check(), on the network's scale.
        return lambda original, converted, x, target: _train(
            (original, converted)[which], x, target)[0]

    cases = []
    for pass_, step in (("fwd", fwd), ("train", train)):
        cases.append(BenchmarkCase(
            name=case_name(setup, pass_), label=USER_MODEL_LABEL,
            sub_label=f"{setup.description} {pass_}", make_inputs=_make_inputs(setup),
            ours=_pyseg_side(step(1)), reference=step(0), rtol=RTOL[pass_],
            summary=f"{setup.spec} converted (pyseg.nn.convert + pyseg.kernels) vs as it is",
        ))
    return cases


def ratio_table(results: Iterable[CaseResult]) -> str:
    """One line per network, dtype and device: forward and training-step ratios, from the
    results of :func:`model_cases` among ``results`` (``""`` when there is none).

    Example::

        >>> from pyseg.bench import CaseResult, Timing
        >>> from pyseg.bench.user_model import ratio_table
        >>> r = CaseResult("model/net/fwd", "model", "", "net 1x3x8x8 fwd", False, "cpu",
        ...                "float32", "ok", ours=Timing(1e-3, 0, 1e-3, 5, 1, None),
        ...                reference=Timing(4e-3, 0, 4e-3, 5, 1, None))
        >>> print(ratio_table([r]).splitlines()[-1])
        net 1x3x8x8 float32 cpu    0.25       -
    """
    rows: dict[str, dict[str, str]] = {}
    for r in results:
        parts = r.name.split("/")
        if r.label != USER_MODEL_LABEL or len(parts) != 3:
            continue
        key = f"{r.case_sub_label.rsplit(' ', 1)[0]} {r.dtype} {r.device}"
        ok = r.status == "ok" and r.ratio is not None and math.isfinite(r.ratio)
        rows.setdefault(key, {})[parts[2]] = f"{r.ratio:.2f}" if ok else r.status
    if not rows:
        return ""
    width = max(len(k) for k in [*rows, "network, input"])
    lines = [("ratio = time converted (pyseg.nn.convert + pyseg.kernels) / time as it is "
              "(lower is better)"),
             f"{'network, input':<{width}}  {'fwd':>6}  {'train':>6}",
             f"{'-' * width}  {'-' * 6}  {'-' * 6}"]
    for key, cells in rows.items():
        lines.append(f"{key:<{width}}  {cells.get('fwd', '-'):>6}  {cells.get('train', '-'):>6}")
    return "\n".join(lines)


def from_args(spec: str, kwargs_json: str = "{}", input_shape: str | None = None, *,
              quick: bool = False) -> UserModel:
    """The :class:`UserModel` of ``pyseg bench --model SPEC --model-kwargs JSON --input
    N,C,H,W``, checked (the factory is imported here, so a wrong name fails before any
    timing).

    Raises:
        ValueError: naming the option: an unknown module, factory or architecture, kwargs
            that are not JSON, an input shape that is not four positive ints.
        TypeError: ``--model-kwargs`` is JSON but not an object.

    ``spec`` is ``--model``, ``kwargs_json`` ``--model-kwargs``, ``input_shape`` ``--input``
    (None: ``1,3,256,256``, or ``1,3,64,64`` with ``quick``).

    Example::

        >>> from pyseg.bench.user_model import from_args
        >>> from_args("torch.nn:Conv2d", '{"in_channels": 3, "out_channels": 2, '
        ...           '"kernel_size": 1}', "1,3,8,8").input_shape
        (1, 3, 8, 8)
        >>> from_args("torch.nn:Conv2d", input_shape="8,8")
        Traceback (most recent call last):
        ...
        ValueError: --input must be N,C,H,W (four positive ints), got '8,8'
    """
    import json

    try:
        kwargs = json.loads(kwargs_json)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model-kwargs must be a JSON object: {e}") from None
    if not isinstance(kwargs, dict):
        raise TypeError(f"--model-kwargs must be a JSON object, got {kwargs_json!r}")
    if input_shape is None:
        shape: tuple[int, ...] = (1, 3, 64, 64) if quick else (1, 3, 256, 256)
    else:
        try:
            shape = tuple(int(v) for v in input_shape.split(","))
        except ValueError:
            shape = ()
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"--input must be N,C,H,W (four positive ints), got "
                             f"{input_shape!r}")
    _factory(spec)
    return UserModel(spec, kwargs, shape)  # type: ignore[arg-type]


def report(setup: UserModel, devices: Sequence[str], dtypes: Sequence[torch.dtype],
           results: Sequence[CaseResult]) -> str:
    """What ``pyseg bench --model`` prints above the timing table: per device and dtype,
    the conversion report, the calls that went to pyseg (or stayed with torch, and why)
    and the agreement of the two sides (:func:`check`), then :func:`ratio_table` of
    ``results``; for ``setup`` on each of ``devices`` and ``dtypes``. A network that cannot
    run there gets a line saying so instead of raising.

    Example::

        >>> from pyseg.bench.user_model import UserModel
        >>> setup = UserModel("torch.nn:ConvTranspose2d", {"in_channels": 3, "out_channels": 2,
        ...                   "kernel_size": 3, "padding": 1}, (1, 3, 8, 8))
        >>> from pyseg.bench.user_model import report
        >>> print(report(setup, ["cpu"], [torch.float32], []).splitlines()[0])
        ConvTranspose2d 1x3x8x8 float32 cpu
    """
    parts = []
    for device in devices:
        for dtype in dtypes:
            title = f"{setup.description} {str(dtype).removeprefix('torch.')} {device}"
            try:
                parts.append(f"{title}\n{check(setup, device, dtype)}")
            except Exception as e:  # noqa: BLE001 - the timing table says more
                parts.append(f"{title}: could not run ({type(e).__name__}: {e})")
    parts.append(ratio_table(results))
    return "\n\n".join(parts)
