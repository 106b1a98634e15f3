"""Run benchmark cases: check ours against the reference once, then time both.

Each case is run per (device, dtype). The steps, in order, for one case:

1. ``case.requires(device, dtype)`` may give a reason to skip (an op not built yet, no GPU).
2. Inputs are made once; for ``backward`` cases every floating-point input tensor gets
   ``requires_grad`` and the timed call is forward + ``torch.autograd.grad`` of all of them.
3. The reference runs, then ours, and :func:`check_agreement` compares them: shapes, NaNs,
   and each tensor within ``rtol`` of the reference's largest magnitude. A tensor beyond
   ``rtol`` at a precision below float64 is judged against the truth rather than against
   the reference's rounding: both sides run again in float64 (inputs and weights cast) and
   ours passes when pyseg in float64 agrees with torch in float64 and ours is at most
   ``TRUTH_FACTOR`` (2) times as far from that float64 result as the reference is (plus a
   floor of :func:`floor_rtol` times the largest scale among the tensor's siblings, e.g. the
   model's largest gradient). Otherwise the case is *refused*: a benchmark of a wrong kernel
   is worse than none. A reference that raises (e.g. a dtype it does not support) skips the
   case; ours raising is an error.
4. Peak extra memory of one call of each (see :func:`peak_memory`).
5. ``torch.utils.benchmark.Timer.blocked_autorange`` for ours, then the reference (the Timer
   synchronizes CUDA); or, with ``interleave``, blocks of the two alternately and the ratio
   as the median of the per-pair ratios (:func:`_time_interleaved`).

After a run, :func:`pyseg.bench.trust.mark_unreliable` marks the timed cases whose numbers
cannot be trusted (large spread, few runs, a common floor on both sides).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pyseg.registry import BenchmarkCase

__all__ = [
    "CaseResult",
    "Timing",
    "default_rtol",
    "peak_memory",
    "run",
    "run_case",
]

OURS = "pyseg"
REFERENCE = "reference"

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def default_rtol(dtype: torch.dtype) -> float:
    """Agreement tolerance relative to the reference's largest magnitude, per dtype.

    Loose enough for a different summation order (float32: ~1e-7 per operation over
    thousands of terms), tight enough to catch a wrong index or weight, which moves a result
    by a sizable fraction of its scale. ``dtype`` is the case's; any other than the four of
    :data:`DTYPES` gets the float32 value.

    Example::

        >>> from pyseg.bench import default_rtol
        >>> default_rtol(torch.float32), default_rtol(torch.float64)
        (0.0001, 1e-09)
    """
    return {
        torch.float64: 1e-9,
        torch.float32: 1e-4,
        torch.float16: 1e-2,
        torch.bfloat16: 4e-2,
    }.get(dtype, 1e-4)


@dataclass
class Timing:
    """One side (ours or reference) of a case: the ``median``, ``iqr`` (interquartile range)
    and ``mean`` seconds per call over ``runs`` timed blocks of ``number_per_run`` calls,
    ``peak_bytes`` (peak extra memory of one call; None if it could not be measured) and
    the ``torch.utils.benchmark`` ``measurement`` behind them.

    Example::

        >>> from pyseg.bench import Timing
        >>> t = Timing(median=2e-3, iqr=2e-4, mean=2.1e-3, runs=5, number_per_run=10,
        ...            peak_bytes=None)
        >>> round(t.spread, 6), t.to_json()["median_s"]
        (0.1, 0.002)
    """

    median: float  # seconds per call
    iqr: float
    mean: float
    runs: int  # number of timed blocks
    number_per_run: int
    peak_bytes: int | None  # peak extra memory of one call; None if it could not be measured
    measurement: Any = field(default=None, repr=False)  # torch.utils.benchmark.Measurement

    @property
    def spread(self) -> float:
        """Interquartile range over the median of the runs (torch.utils.benchmark warns above
        0.1); inf when the median is not positive."""
        return self.iqr / self.median if self.median > 0 else math.inf

    def to_json(self) -> dict:
        """The fields as a JSON-ready dict (times in seconds), ``spread`` included."""
        return {
            "median_s": self.median,
            "iqr_s": self.iqr,
            "spread": self.spread if math.isfinite(self.spread) else None,
            "mean_s": self.mean,
            "runs": self.runs,
            "number_per_run": self.number_per_run,
            "peak_bytes": self.peak_bytes,
        }


@dataclass
class CaseResult:
    """The outcome of one case on one device and dtype.

    ``status`` is ``"ok"`` (timed), ``"skipped"`` (``reason`` says why: unavailable op, no
    device, dtype the reference does not support), ``"refused"`` (ours disagrees with the
    reference; not timed) or ``"error"`` (ours or the inputs raised).

    ``agreement`` says how the check was passed when it needed the float64 judgement.
    ``interleaved``: the two sides' timed blocks alternated (A B A B ...) and ``ratio`` is
    the median of the per-pair ratios (``pair_ratio``). ``unreliable``: why the numbers of a
    timed case cannot be trusted (empty when they can), set by
    :func:`pyseg.bench.trust.mark_unreliable`.

    The other fields come from the case (``name``, ``label``, ``case_sub_label`` = its
    ``sub_label``, ``backward``, ``sweep``, ``size``, ``summary``, ``plugin``: the name of
    the plugin that provided it) and the run: ``sub_label`` (the case's, plus dtype, device
    and ``fwd+bwd``), ``device``, ``dtype``, the two :class:`Timing` ``ours`` and
    ``reference``, and ``max_rel_diff`` (the worst difference of the agreement check).

    Example::

        >>> from pyseg.bench import CaseResult, Timing
        >>> def timing(seconds):
        ...     return Timing(seconds, 0.0, seconds, 3, 10, None)
        >>> r = CaseResult("add", "add", "4x4 float32 cpu", "4x4", False, "cpu", "float32",
        ...                "ok", ours=timing(1e-6), reference=timing(2e-6))
        >>> r.ratio, r.to_json()["mode"]
        (0.5, 'fwd')
    """

    name: str
    label: str
    sub_label: str  # the case's shape/params + dtype + device (+ "fwd+bwd")
    case_sub_label: str
    backward: bool
    device: str
    dtype: str
    status: str
    reason: str = ""
    ours: Timing | None = None
    reference: Timing | None = None
    max_rel_diff: float | None = None
    sweep: str = ""
    size: int = 0
    summary: str = ""
    plugin: str = ""  # the plugin that provided the case, when the registry says
    agreement: str = ""
    interleaved: bool = False
    pair_ratio: float | None = None
    unreliable: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """Time of ours / time of the reference (lower is better): the median of per-pair
        ratios when interleaved, else the ratio of the medians."""
        if self.pair_ratio is not None:
            return self.pair_ratio
        if self.ours is None or self.reference is None or self.reference.median <= 0:
            return None
        return self.ours.median / self.reference.median

    def to_json(self) -> dict:
        """The fields as a JSON-ready dict (what ``pyseg bench --json`` writes per row)."""
        return {
            "name": self.name,
            "label": self.label,
            "sub_label": self.sub_label,
            "case_sub_label": self.case_sub_label,
            "mode": "fwd+bwd" if self.backward else "fwd",
            "device": self.device,
            "dtype": self.dtype,
            "status": self.status,
            "reason": self.reason,
            "ours": self.ours.to_json() if self.ours else None,
            "reference": self.reference.to_json() if self.reference else None,
            "ratio": self.ratio,
            "max_rel_diff": self.max_rel_diff,
            "sweep": self.sweep,
            "size": self.size,
            "summary": self.summary,
            "plugin": self.plugin,
            "agreement": self.agreement,
            "interleaved": self.interleaved,
            "ratio_of": None if self.ratio is None else "median of per-pair ratios"
            if self.pair_ratio is not None else "medians",
            "unreliable": list(self.unreliable),
        }


class Disagreement(Exception):
    """Raised by :func:`check_agreement`: ours and the reference disagree (the message says
    where and by how much).

    Example::

        >>> from pyseg.bench import Disagreement, check_agreement
        >>> try:
        ...     check_agreement((torch.ones(2),), (torch.ones(2), torch.ones(2)), 1e-4)
        ... except Disagreement as e:
        ...     print(e)
        output: pyseg returns 1 tensors, the reference 2 (or in a different structure)
    """


# How the float64 judgement (see check_agreement) weighs pyseg's error against torch's.
TRUTH_FACTOR = 2.0


def floor_rtol(dtype: torch.dtype) -> float:
    """The float64 judgement's floor, relative to the largest scale among a tensor's siblings
    (e.g. the largest gradient of the model): a tenth of :func:`default_rtol`, below what
    rounding at ``dtype`` leaves in the largest gradients of a deep network (float32: 1e-5)."""
    return default_rtol(dtype) / 10


def _leaves(obj: Any, path: tuple = ()) -> Iterator[tuple[tuple, torch.Tensor | None]]:
    """(path, tensor or None) for every tensor and None in nested tuples, lists and dicts."""
    if obj is None or isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, tuple | list):
        for i, item in enumerate(obj):
            yield from _leaves(item, (*path, i))
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _leaves(item, (*path, key))


def _max_abs(t: torch.Tensor) -> float:
    return t.detach().double().nan_to_num(0.0).abs().max().item() if t.numel() else 0.0


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double(), b.detach().double()
    same = a64.isnan() | b64.isnan() | (a64 == b64)  # NaNs are checked apart; equal infinities
    return (a64 - b64).masked_fill(same, 0).abs().max().item()


def _split_inputs(inputs: Any) -> tuple[tuple, dict]:
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if isinstance(inputs, tuple | list):
        return tuple(inputs), {}
    return (inputs,), {}


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, tuple | list):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _make_call(
    fn: Callable[..., Any], args: tuple, kwargs: dict, backward: bool,
    diff_inputs: Sequence[torch.Tensor], grad_outputs: list[torch.Tensor] | None,
) -> Callable[[], Any]:
    """The timed statement: the forward, or forward + gradients of ``diff_inputs``."""
    if not backward:
        return lambda: fn(*args, **kwargs)

    def forward_backward():
        outputs = [t for t in _tensors(fn(*args, **kwargs)) if t.requires_grad]
        grads = torch.autograd.grad(outputs, diff_inputs, grad_outputs, allow_unused=True)
        return outputs, grads  # both checked against the reference

    return forward_backward


def _to_float64(obj: Any, memo: dict[int, Any]) -> Any:
    """``obj`` with every floating tensor cast to float64 (``requires_grad`` kept) and every
    module a float64 deep copy; a tensor or module met twice maps to one copy."""
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, torch.Tensor):
        out: Any = obj
        if obj.is_floating_point():
            out = obj.detach().to(torch.float64).requires_grad_(obj.requires_grad)
    elif isinstance(obj, torch.nn.Module):
        out = copy.deepcopy(obj).to(torch.float64)
    elif isinstance(obj, tuple | list):
        out = type(obj)(_to_float64(item, memo) for item in obj)
    elif isinstance(obj, dict):
        out = {key: _to_float64(item, memo) for key, item in obj.items()}
    else:
        return obj
    memo[id(obj)] = out
    return out


def _run_float64(case: BenchmarkCase, args: tuple, kwargs: dict,
                 diff_inputs: Sequence[torch.Tensor],
                 grad_outputs: list[torch.Tensor] | None) -> tuple[Any, Any]:
    """Both sides of ``case`` once more on the same inputs cast to float64: the truth the
    agreement check judges a low-precision disagreement against."""
    memo: dict[int, Any] = {}
    args64, kwargs64 = _to_float64(args, memo), _to_float64(kwargs, memo)
    diff64 = [memo[id(t)] for t in diff_inputs]
    grads64 = None if grad_outputs is None else [g.to(torch.float64) for g in grad_outputs]
    ours, reference = (_make_call(fn, args64, kwargs64, case.backward, diff64, grads64)()
                       for fn in (case.ours, case.reference))
    return ours, reference


def check_agreement(
    ours: Any, reference: Any, rtol: float, what: str = "output", *,
    exact: Callable[[], tuple[Any, Any]] | None = None, factor: float = TRUTH_FACTOR,
    floor: float | None = None,
) -> tuple[float, str]:
    """Does ``ours`` compute what ``reference`` does? The check before a case is timed.

    Both are results at the case's dtype: tensors, possibly nested in tuples, lists and dicts
    (``None`` leaves, e.g. unused gradients, must match). Shapes, dtypes, NaN positions and
    non-floating tensors must match exactly. A floating tensor agrees when
    ``max |ours - reference| <= rtol * max |reference|`` (its *scale*).

    Two correct float32 implementations of a deep network can differ by more than that
    (batch norm over two values amplifies rounding), so float32 torch is not the truth. When
    a floating tensor is beyond ``rtol`` and ``exact`` is given, ``exact()`` runs both sides
    again in float64 (weights cast, same inputs) and returns ``(ours64, reference64)``; the
    tensor is then accepted when

    * pyseg in float64 agrees with torch in float64 (to ``default_rtol(float64)`` of the
      largest scale among the tensor's siblings), and
    * pyseg's error against torch's float64 result is at most ``factor`` times torch's own
      error against it, plus ``floor`` times the largest float64 scale among the tensor's
      siblings (the other tensors of the same tuple, list or dict: the model's other
      gradients), so an all-but-zero gradient is not judged by its own scale.

    Args:
        ours: pyseg's result.
        reference: the reference's result (its dtype sets the tolerances).
        rtol: tolerance relative to each tensor's scale.
        what: the result's name in messages (``"output"``, ``"gradient"``).
        exact: None, or a callable returning both results in float64 (called at most once,
            only when a tensor is beyond ``rtol``).
        factor: how much larger than torch's error against float64 pyseg's may be.
        floor: the floor's fraction of the siblings' largest scale (default
            :func:`floor_rtol` of the reference's dtype).

    Returns:
        ``(worst, note)``: the largest ``|ours - reference| / scale`` over the floating
        tensors, and, when the float64 run was needed, a line saying how they were judged
        (else ``""``).

    Raises:
        Disagreement: a structural mismatch, or a tensor beyond ``rtol`` that is not rescued
            by the float64 judgement; the message names the tensor and gives the errors.

    Example::

        >>> from pyseg.bench import check_agreement
        >>> ref = torch.tensor([1.0, 2.0, 4.0])
        >>> check_agreement(ref + 4e-5, ref, rtol=1e-4)[1]
        ''
        >>> check_agreement(ref + 1e-3, ref, rtol=1e-4, what="gradient")
        Traceback (most recent call last):
        ...
        pyseg.bench.harness.Disagreement: gradient: ...
    """
    ours_l, ref_l = list(_leaves(ours)), list(_leaves(reference))
    if [p for p, _ in ours_l] != [p for p, _ in ref_l]:
        raise Disagreement(f"{what}: pyseg returns {len(ours_l)} tensors, the reference "
                           f"{len(ref_l)} (or in a different structure)")
    single = len(ref_l) == 1

    def name(path: tuple) -> str:
        return what if single else what + "".join(f"[{k}]" for k in path)

    worst = 0.0
    beyond: list[tuple[tuple, torch.Tensor, torch.Tensor, float, float]] = []
    for (path, a), (_, b) in zip(ours_l, ref_l):
        if a is None or b is None:
            if (a is None) != (b is None):
                raise Disagreement(f"{name(path)}: one side is None")
            continue
        if a.shape != b.shape:
            raise Disagreement(f"{name(path)}: shape {tuple(a.shape)} vs reference "
                               f"{tuple(b.shape)}")
        if a.dtype != b.dtype:
            raise Disagreement(f"{name(path)}: dtype {a.dtype} vs reference {b.dtype}")
        if a.numel() == 0:
            continue
        if not (a.dtype.is_floating_point or a.dtype.is_complex):
            if not torch.equal(a, b):
                raise Disagreement(f"{name(path)}: values differ")
            continue
        if not torch.equal(a.isnan(), b.isnan()):
            raise Disagreement(f"{name(path)}: NaNs in different places")
        scale, diff = _max_abs(b), _max_abs_diff(a, b)
        rel = diff / scale if scale > 0 else diff
        if not math.isfinite(rel):
            raise Disagreement(f"{name(path)}: non-finite difference (infinities that "
                               "do not match)")
        worst = max(worst, rel)
        if rel > rtol:
            beyond.append((path, a, b, diff, scale))
    if not beyond:
        return worst, ""

    def plain(path: tuple, diff: float, scale: float) -> str:
        return (f"{name(path)}: max |pyseg - reference| = {diff:.3g} is {diff / scale:.3g} "
                f"of the reference's scale {scale:.3g} (tolerance {rtol:g})" if scale > 0
                else f"{name(path)}: max |pyseg - reference| = {diff:.3g} where the "
                f"reference is 0 (tolerance {rtol:g})")

    first_path, _, first_ref, first_diff, first_scale = beyond[0]
    dtype = first_ref.dtype
    if exact is None or dtype == torch.float64:
        raise Disagreement(plain(first_path, first_diff, first_scale))
    try:
        ours64, ref64 = exact()
    except Exception as e:
        raise Disagreement(f"{plain(first_path, first_diff, first_scale)}; the float64 run "
                           f"to judge it failed: {_first_line(e)}") from None
    ours64_d, truth_d = dict(_leaves(ours64)), dict(_leaves(ref64))
    if floor is None:
        floor = floor_rtol(dtype)
    group_scale: dict[tuple, float] = {}
    for path, t in truth_d.items():
        if t is not None and t.is_floating_point():
            group_scale[path[:-1]] = max(group_scale.get(path[:-1], 0.0), _max_abs(t))
    judged = []
    for path, a, b, diff, scale in beyond:
        truth, mine64 = truth_d.get(path), ours64_d.get(path)
        if truth is None or mine64 is None or truth.shape != a.shape \
                or mine64.shape != a.shape:
            raise Disagreement(f"{plain(path, diff, scale)}; the float64 run returned no "
                               "matching tensor to judge it")
        siblings = group_scale.get(path[:-1], 0.0)
        d64 = _max_abs_diff(mine64, truth)
        err_p, err_t = _max_abs_diff(a, truth), _max_abs_diff(b, truth)
        allowed = factor * err_t + floor * siblings
        errors = (f"against float64, pyseg is off by {err_p:.3g} and the reference by "
                  f"{err_t:.3g}" + (f" ({err_p / scale:.3g} and {err_t / scale:.3g} of the "
                                    f"scale)" if scale > 0 else ""))
        if not err_p <= allowed:
            raise Disagreement(
                f"{plain(path, diff, scale)}; {errors}: more than {factor:g} x the "
                f"reference's error + {floor:g} x the largest scale {siblings:.3g} among its "
                f"siblings = {allowed:.3g}")
        if d64 > default_rtol(torch.float64) * siblings:
            raise Disagreement(
                f"{plain(path, diff, scale)}; {errors}, but in float64 pyseg and the "
                f"reference differ by {d64:.3g} ({d64 / siblings if siblings else d64:.3g} of "
                f"the largest scale {siblings:.3g} among its siblings; tolerance "
                f"{default_rtol(torch.float64):g})")
        judged.append((err_p / scale if scale > 0 else 0.0, path, errors))
    _, path, errors = max(judged, key=lambda j: j[0])
    note = (f"{what}: {len(beyond)} tensor(s) beyond tolerance {rtol:g} of the "
            f"{_dtype_name(dtype)} reference, "
            f"judged against float64 instead and accepted (largest: {name(path)}, {errors})")
    return worst, note


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak extra memory (bytes) of one call of ``fn``: what it allocates on top of what was
    allocated before, at its highest point (outputs included).

    CUDA: ``torch.cuda.max_memory_allocated`` around the call. CPU: the allocation and
    free events of torch's CPU allocator recorded by ``torch.profiler`` (profile_memory),
    summed in time order. None when it cannot be measured. ``device`` is where ``fn``
    computes.

    Example: a 1 MiB float32 tensor made (and returned) by the call::

        >>> from pyseg.bench import peak_memory
        >>> peak = peak_memory(lambda: torch.ones(512, 512), torch.device("cpu"))
        >>> peak is None or peak >= 2**20
        True
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - base)
    try:
        from torch.profiler import ProfilerActivity, profile

        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU],
                                      profile_memory=True) as prof:
            fn()
        events = [
            (e.start_ns(), e.nbytes())
            for e in prof.profiler.kineto_results.events()
            if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
        ]
    except Exception:  # profiler internals differ between torch versions
        return None
    events.sort(key=lambda e: e[0])
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: the profiler's C++ side logs every start and stop there."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _time(fn: Callable[[], Any], *, label: str, sub_label: str, description: str,
          threads: int, min_run_time: float) -> Any:
    # Imported here: torch.utils.benchmark costs ~0.2 s, and plugins import pyseg.bench.
    from torch.utils import benchmark as tbench

    timer = tbench.Timer(
        stmt="fn()",
        globals={"fn": fn},
        label=label,
        sub_label=sub_label,
        description=description,
        num_threads=threads,
    )
    return timer.blocked_autorange(min_run_time=min_run_time)


# Interleaved timing: blocks of about min_run_time / BLOCKS_PER_RUN, at least MIN_PAIRS pairs.
BLOCKS_PER_RUN = 20
MIN_PAIRS = 4


def _time_interleaved(ours: Callable[[], Any], reference: Callable[[], Any], *, label: str,
                      sub_label: str, threads: int, min_run_time: float,
                      device: torch.device,
                      clock: Callable[[], float] = time.perf_counter) -> tuple[Any, Any, float]:
    """Time blocks of ours and of the reference alternately (A B A B ...) until each side has
    run ``min_run_time`` seconds (and ``MIN_PAIRS`` pairs). Returns both Measurements and the
    median over pairs of (ours per call / reference per call): a drift of the machine's speed
    during the run moves both halves of a pair alike. ``clock``: seconds, for tests."""
    from torch.utils import benchmark as tbench
    from torch.utils.benchmark.utils.common import TaskSpec

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def block(fn: Callable[[], Any], number: int) -> float:
        sync()
        start = clock()
        for _ in range(number):
            fn()
        sync()
        return clock() - start

    sides = (ours, reference)
    numbers = []
    for fn in sides:
        block(fn, 1)  # warm-up
        one = max(block(fn, 1), 1e-9)
        numbers.append(max(1, int(min_run_time / BLOCKS_PER_RUN / one)))
    times: tuple[list[float], list[float]] = ([], [])
    while (len(times[0]) < MIN_PAIRS
           or min(sum(times[0]), sum(times[1])) < min_run_time):
        for fn, number, out in zip(sides, numbers, times):
            out.append(block(fn, number))
    ratios = [(a / numbers[0]) / (b / numbers[1]) for a, b in zip(*times)]
    measurements = [
        tbench.Measurement(
            number_per_run=number, raw_times=out,
            task_spec=TaskSpec(stmt="fn()", setup="pass", label=label, sub_label=sub_label,
                               description=description, num_threads=threads))
        for number, out, description in zip(numbers, times, (OURS, REFERENCE))
    ]
    return measurements[0], measurements[1], statistics.median(ratios)


def _timing(m: Any, peak: int | None) -> Timing:
    return Timing(
        median=m.median, iqr=m.iqr, mean=m.mean, runs=len(m.times),
        number_per_run=m.number_per_run, peak_bytes=peak, measurement=m,
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def run_case(
    case: BenchmarkCase,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    threads: int | None = None,
    min_run_time: float = 0.2,
    memory: bool = True,
    interleave: bool = False,
) -> CaseResult:
    """Check and time one case on one device and dtype; never raises for a case's fault.

    Args:
        case: the :class:`~pyseg.registry.BenchmarkCase`.
        device: where to run it (a CUDA device without CUDA: ``"skipped"``).
        dtype: the floating dtype of its inputs.
        threads: torch threads while timing (None: the current number).
        min_run_time: seconds each side is timed for, at least.
        memory: also measure each side's peak memory (:func:`peak_memory`).
        interleave: alternate the two sides' timed blocks and take the ratio as the median
            of the per-pair ratios.

    Returns:
        A :class:`CaseResult`; a case that cannot run, disagrees or raises gets the status
        ``"skipped"``, ``"refused"`` or ``"error"`` and its reason instead of raising.

    Example::

        >>> import pyseg.bench
        >>> def add_case(name, quick=False, backward=False):
        ...     return pyseg.BenchmarkCase(
        ...         name, "add", "4x4", make_inputs=lambda device, dtype: (
        ...             torch.ones(4, 4, device=device, dtype=dtype),) * 2,
        ...         ours=torch.add, reference=lambda a, b: a + b, quick=quick, backward=backward)
        >>> r = pyseg.bench.run_case(add_case("add"), min_run_time=0.001, memory=False)
        >>> r.status, r.sub_label, r.ratio > 0
        ('ok', '4x4 float32 cpu', True)
    """
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    mode = " fwd+bwd" if case.backward else ""
    sub_label = f"{case.sub_label} {_dtype_name(dtype)} {device.type}{mode}"
    result = CaseResult(
        name=case.name, label=case.label, sub_label=sub_label, case_sub_label=case.sub_label,
        backward=case.backward, device=device.type, dtype=_dtype_name(dtype), status="ok",
        sweep=case.sweep, size=case.size, summary=case.summary,
        plugin=_plugin_name(case),
    )

    def finish(status: str, reason: str) -> CaseResult:
        result.status, result.reason = status, reason
        return result

    if device.type == "cuda" and not torch.cuda.is_available():
        return finish("skipped", "CUDA is not available")
    if case.ours is case.reference:
        return finish("refused", "ours and the reference are the same callable")
    if case.requires is not None:
        try:
            reason = case.requires(device, dtype)
        except Exception as e:
            return finish("error", f"requires() raised {_first_line(e)}")
        if reason:
            return finish("skipped", reason)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        try:
            args, kwargs = _split_inputs(case.make_inputs(device, dtype))
        except Exception as e:
            return finish("error", f"make_inputs raised {_first_line(e)}")
        diff_inputs: list[torch.Tensor] = []
        grad_outputs = None
        if case.backward:
            for t in _tensors((args, kwargs)):
                if t.is_floating_point() and not t.requires_grad:
                    t.requires_grad_(True)
                    diff_inputs.append(t)
            if not diff_inputs:
                return finish("error", "backward case without floating-point inputs")
            try:
                with torch.no_grad():
                    shapes = [t for t in _tensors(case.reference(*args, **kwargs))]
            except Exception as e:
                return finish("skipped", f"reference failed: {_first_line(e)}")
            gen = torch.Generator(device="cpu").manual_seed(0)
            grad_outputs = [
                torch.randn(t.shape, generator=gen, dtype=torch.float32)
                .to(device=t.device, dtype=t.dtype).contiguous(memory_format=_format_of(t))
                for t in shapes if t.is_floating_point()
            ]
        ours_call = _make_call(case.ours, args, kwargs, case.backward, diff_inputs, grad_outputs)
        ref_call = _make_call(case.reference, args, kwargs, case.backward, diff_inputs, grad_outputs)

        try:
            ref_out = ref_call()
        except Exception as e:
            return finish("skipped", f"reference failed: {_first_line(e)}")
        try:
            ours_out = ours_call()
        except Exception as e:
            return finish("error", f"pyseg raised {_first_line(e)}")
        rtol = case.rtol if case.rtol is not None else default_rtol(dtype)

        @functools.cache
        def exact() -> tuple[Any, Any]:  # both sides in float64, for check_agreement
            return _run_float64(case, args, kwargs, diff_inputs, grad_outputs)

        try:
            if case.backward:
                def part(i: int) -> Callable[[], tuple[Any, Any]]:
                    return lambda: (exact()[0][i], exact()[1][i])

                checks = [check_agreement(ours_out[i], ref_out[i], rtol, what, exact=part(i))
                          for i, what in enumerate(("output", "gradient"))]
            else:
                checks = [check_agreement(ours_out, ref_out, rtol, "output", exact=exact)]
        except Disagreement as e:
            return finish("refused", f"pyseg disagrees with the reference: {e}")
        result.max_rel_diff = max(worst for worst, _ in checks)
        result.agreement = "; ".join(note for _, note in checks if note)
        exact.cache_clear()  # the float64 copies are not needed while timing
        del ours_out, ref_out

        peaks = (peak_memory(ours_call, device), peak_memory(ref_call, device)) if memory \
            else (None, None)
        if interleave:
            m_ours, m_ref, result.pair_ratio = _time_interleaved(
                ours_call, ref_call, label=case.label, sub_label=sub_label, threads=threads,
                min_run_time=min_run_time, device=device)
            result.interleaved = True
        else:
            m_ours = _time(ours_call, label=case.label, sub_label=sub_label, description=OURS,
                           threads=threads, min_run_time=min_run_time)
            m_ref = _time(ref_call, label=case.label, sub_label=sub_label,
                          description=REFERENCE, threads=threads, min_run_time=min_run_time)
        result.ours, result.reference = _timing(m_ours, peaks[0]), _timing(m_ref, peaks[1])
        return result
    except Exception as e:  # e.g. out of memory while timing
        return finish("error", _first_line(e))
    finally:
        torch.set_num_threads(previous_threads)


def _plugin_name(case: BenchmarkCase) -> str:
    plugin = getattr(case, "plugin", None)  # set by the registry on the specs it returns
    if plugin is None:
        return ""
    return str(getattr(plugin, "name", None) or plugin)


def _format_of(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
            and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def run(
    cases: Iterable[BenchmarkCase],
    *,
    devices: Sequence[str | torch.device] = ("cpu",),
    dtypes: Sequence[torch.dtype] = (torch.float32,),
    threads: int | None = None,
    min_run_time: float = 0.2,
    memory: bool = True,
    interleave: bool = False,
    progress: Callable[[CaseResult, float], None] | None = None,
) -> list[CaseResult]:
    """Run every case on every device and dtype; returns one :class:`CaseResult` each.

    ``progress(result, seconds)`` is called after each case (the CLI prints a line). At the
    end every timed result whose numbers cannot be trusted gets its ``unreliable`` reasons
    (:func:`pyseg.bench.trust.mark_unreliable`). ``cases``, ``devices`` and ``dtypes`` are
    run in the order given (devices outermost); ``threads``, ``min_run_time``, ``memory`` and
    ``interleave`` are as for :func:`run_case`, which never raises for a case's fault.

    Example::

        >>> import pyseg.bench
        >>> def add_case(name, quick=False, backward=False):
        ...     return pyseg.BenchmarkCase(
        ...         name, "add", "4x4", make_inputs=lambda device, dtype: (
        ...             torch.ones(4, 4, device=device, dtype=dtype),) * 2,
        ...         ours=torch.add, reference=lambda a, b: a + b, quick=quick, backward=backward)
        >>> results = pyseg.bench.run([add_case("add")], dtypes=(torch.float32, torch.float64),
        ...                           min_run_time=0.001, memory=False)
        >>> [(r.dtype, r.status) for r in results]
        [('float32', 'ok'), ('float64', 'ok')]
    """
    from pyseg.bench.trust import mark_unreliable

    cases = list(cases)
    results = []
    for device in devices:
        for dtype in dtypes:
            for case in cases:
                start = time.perf_counter()
                r = run_case(case, device, dtype, threads=threads,
                             min_run_time=min_run_time, memory=memory, interleave=interleave)
                results.append(r)
                if progress is not None:
                    progress(r, time.perf_counter() - start)
    mark_unreliable(results)
    return results
