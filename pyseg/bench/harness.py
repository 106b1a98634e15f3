"""Run benchmark cases: check ours against the reference once, then time both.

Each case is run per (device, dtype). The steps, in order, for one case:

1. ``case.requires(device, dtype)`` may give a reason to skip (an op not built yet, no GPU).
2. Inputs are made once; for ``backward`` cases every floating-point input tensor gets
   ``requires_grad`` and the timed call is forward + ``torch.autograd.grad`` of all of them.
3. The reference runs, then ours; if ours disagrees with the reference (shape, NaNs, or a
   difference larger than ``rtol`` times the reference's largest magnitude) the case is
   *refused*: a benchmark of a wrong kernel is worse than none. A reference that raises
   (e.g. a dtype it does not support) skips the case; ours raising is an error.
4. Peak extra memory of one call of each (see :func:`peak_memory`).
5. ``torch.utils.benchmark.Timer.blocked_autorange`` for ours, then the reference (the Timer
   synchronizes CUDA).
"""

from __future__ import annotations

import contextlib
import math
import os
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
    by a sizable fraction of its scale.
    """
    return {
        torch.float64: 1e-9,
        torch.float32: 1e-4,
        torch.float16: 1e-2,
        torch.bfloat16: 4e-2,
    }.get(dtype, 1e-4)


@dataclass
class Timing:
    """One side (ours or reference) of a case."""

    median: float  # seconds per call
    iqr: float
    mean: float
    runs: int  # number of timed blocks
    number_per_run: int
    peak_bytes: int | None  # peak extra memory of one call; None if it could not be measured
    measurement: Any = field(default=None, repr=False)  # torch.utils.benchmark.Measurement

    def to_json(self) -> dict:
        return {
            "median_s": self.median,
            "iqr_s": self.iqr,
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

    @property
    def ratio(self) -> float | None:
        """Median time of ours / median time of the reference (lower is better)."""
        if self.ours is None or self.reference is None or self.reference.median <= 0:
            return None
        return self.ours.median / self.reference.median

    def to_json(self) -> dict:
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
        }


class _Refused(Exception):
    pass


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


def _compare(ours: Any, ref: Any, rtol: float, what: str) -> float:
    """Max |ours - ref| / max |ref| over every tensor; raises _Refused beyond ``rtol``."""
    ours_t, ref_t = list(_tensors(ours)), list(_tensors(ref))
    if len(ours_t) != len(ref_t):
        raise _Refused(f"{what}: {len(ours_t)} tensors from pyseg, {len(ref_t)} from the reference")
    worst = 0.0
    for i, (a, b) in enumerate(zip(ours_t, ref_t)):
        name = what if len(ours_t) == 1 else f"{what}[{i}]"
        if a is None or b is None:
            if (a is None) != (b is None):
                raise _Refused(f"{name}: one side is None")
            continue
        if a.shape != b.shape:
            raise _Refused(f"{name}: shape {tuple(a.shape)} vs reference {tuple(b.shape)}")
        if a.dtype != b.dtype:
            raise _Refused(f"{name}: dtype {a.dtype} vs reference {b.dtype}")
        if a.numel() == 0:
            continue
        if a.dtype.is_floating_point or a.dtype.is_complex:
            a64, b64 = a.detach().double(), b.detach().double()
            nan_a, nan_b = a64.isnan(), b64.isnan()
            if not torch.equal(nan_a, nan_b):
                raise _Refused(f"{name}: NaNs in different places")
            a64, b64 = a64.masked_fill(nan_a, 0), b64.masked_fill(nan_b, 0)
            scale = b64.abs().max().item()
            diff = (a64 - b64).abs().max().item()
            rel = diff / scale if scale > 0 else diff
            if not math.isfinite(rel) or rel > rtol:
                raise _Refused(
                    f"{name}: max |pyseg - reference| = {diff:.3g} is {rel:.3g} of the "
                    f"reference's scale {scale:.3g} (tolerance {rtol:g})"
                )
            worst = max(worst, rel)
        elif not torch.equal(a, b):
            raise _Refused(f"{name}: values differ")
    return worst


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak extra memory (bytes) of one call of ``fn``: what it allocates on top of what was
    allocated before, at its highest point (outputs included).

    CUDA: ``torch.cuda.max_memory_allocated`` around the call. CPU: the allocation and
    free events of torch's CPU allocator recorded by ``torch.profiler`` (profile_memory),
    summed in time order. None when it cannot be measured.
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
) -> CaseResult:
    """Check and time one case on one device and dtype; never raises for a case's fault."""
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
        try:
            if case.backward:
                result.max_rel_diff = max(
                    _compare(ours_out[0], ref_out[0], rtol, "output"),
                    _compare(ours_out[1], ref_out[1], rtol, "gradient"))
            else:
                result.max_rel_diff = _compare(ours_out, ref_out, rtol, "output")
        except _Refused as e:
            return finish("refused", f"pyseg disagrees with the reference: {e}")
        del ours_out, ref_out

        peaks = (peak_memory(ours_call, device), peak_memory(ref_call, device)) if memory \
            else (None, None)
        m_ours = _time(ours_call, label=case.label, sub_label=sub_label, description=OURS,
                       threads=threads, min_run_time=min_run_time)
        m_ref = _time(ref_call, label=case.label, sub_label=sub_label, description=REFERENCE,
                      threads=threads, min_run_time=min_run_time)
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
    progress: Callable[[CaseResult, float], None] | None = None,
) -> list[CaseResult]:
    """Run every case on every device and dtype; returns one :class:`CaseResult` each.

    ``progress(result, seconds)`` is called after each case (the CLI prints a line).
    """
    cases = list(cases)
    results = []
    for device in devices:
        for dtype in dtypes:
            for case in cases:
                start = time.perf_counter()
                r = run_case(case, device, dtype, threads=threads,
                             min_run_time=min_run_time, memory=memory)
                results.append(r)
                if progress is not None:
                    progress(r, time.perf_counter() - start)
    return results
