"""``pyseg bench --emu-profile``: the emulator's memory counters per CUDA kernel.

Runs the ``--quick`` benchmark cases (the benchmark shapes scaled down) of the chosen ops
through the emulated CUDA kernels (``torch.ops.pyseg_emu``) with the counters on, and prints
per kernel what Nsight Compute would report on a GPU: global load / store requests and
32-byte sectors per request, shared-memory wavefronts per request (bank conflicts), atomics,
barriers and divergent warp collectives, each beside its ideal (the same bytes packed
contiguously and aligned; one wavefront per 128 bytes of shared memory). memcheck and
racecheck stay on, so a profile run is also a sanitizer run. See csrc/emu/README.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from pyseg.bench.harness import _split_inputs
from pyseg.registry import BenchmarkCase

__all__ = ["KernelCounters", "profile_cases", "render_profile", "short_kernel_name"]

_FIELDS = (
    "global_load_requests", "global_load_sectors", "global_load_ideal_sectors",
    "global_store_requests", "global_store_sectors", "global_store_ideal_sectors",
    "shared_requests", "shared_wavefronts", "shared_ideal_wavefronts",
    "atomics", "barriers", "warp_collectives", "divergent_collectives",
)


@dataclass
class KernelCounters:
    """The counters of every launch of one kernel in one case, summed: ``case`` and
    ``kernel`` name them, ``launches`` counts the launches, ``totals`` maps each counter
    (global load / store requests and sectors, shared-memory requests and wavefronts, each
    with its ideal; atomics, barriers, warp collectives) to its sum.

    Example::

        >>> from pyseg.bench.emu_profile import KernelCounters
        >>> k = KernelCounters("unpool-4", "max_unpool::gather_kernel<float>", launches=1)
        >>> k.totals.update(global_load_requests=4, global_load_sectors=8,
        ...                 global_load_ideal_sectors=4)
        >>> k.per_request("load"), k.per_request("shared")
        ((2.0, 1.0), None)
    """

    case: str
    kernel: str
    launches: int = 0
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_FIELDS, 0))

    def per_request(self, what: str) -> tuple[float, float] | None:
        """(measured, ideal) sectors or wavefronts per request of ``what`` (``"load"``,
        ``"store"`` or ``"shared"``); None without requests."""
        if what == "shared":
            n = self.totals["shared_requests"]
            return (self.totals["shared_wavefronts"] / n,
                    self.totals["shared_ideal_wavefronts"] / n) if n else None
        n = self.totals[f"global_{what}_requests"]
        return (self.totals[f"global_{what}_sectors"] / n,
                self.totals[f"global_{what}_ideal_sectors"] / n) if n else None

    def to_json(self) -> dict:
        """The fields as one flat JSON-ready dict."""
        return {"case": self.case, "kernel": self.kernel, "launches": self.launches, **self.totals}


def short_kernel_name(name: str) -> str:
    """``name``, a demangled kernel name, without ``void``, its parameter list and the
    ``pyseg::`` namespace.

    Example::

        >>> from pyseg.bench.emu_profile import short_kernel_name
        >>> short_kernel_name("void pyseg::max_unpool::gather_kernel<float, false>(float*, int)")
        'max_unpool::gather_kernel<float, false>'
    """
    name = re.sub(r"^void ", "", name)
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):  # drop the parameter list (the first '(' outside <>)
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0:
            cut = i
            break
    return name[:cut].removeprefix("pyseg::")


def _run(case: BenchmarkCase) -> None:
    args, kwargs = _split_inputs(case.make_inputs(torch.device("cpu"), torch.float32))
    if case.backward:
        def grad(t):
            return t.detach().requires_grad_() if isinstance(t, torch.Tensor) and t.is_floating_point() else t

        args = tuple(grad(a) for a in args)
        kwargs = {k: grad(v) for k, v in kwargs.items()}
    out = case.ours(*args, **kwargs)
    if case.backward:
        outs = out if isinstance(out, (tuple, list)) else (out,)
        sum(o.float().sum() for o in outs if isinstance(o, torch.Tensor)).backward()


def profile_cases(cases: Iterable[BenchmarkCase]) -> list[KernelCounters]:
    """Runs each of ``cases`` once, emulated (forward thread order, memcheck and racecheck
    on), and returns the counters per (case, kernel) as :class:`KernelCounters`.

    Raises ``RuntimeError`` when ``pyseg._emu`` was built without the access hooks (build it
    with ``PYSEG_EMU=1 PYSEG_EMU_CHECKS=1``); what a case raises goes through.

    Example: a tiny max-unpool case (``pyseg bench --emu-profile`` runs the quick cases);
    the profile needs an instrumented emulator build, as the default ``PYSEG_EMU=1`` one is::

        >>> from pyseg import _loader
        >>> from pyseg.bench.emu_profile import profile_cases
        >>> x, idx = F.max_pool2d(torch.rand(1, 1, 4, 4), 2, return_indices=True)
        >>> case = pyseg.BenchmarkCase(
        ...     "tiny-unpool", "max_unpool2d", "1x1x2x2", ours=pyseg.ops.max_unpool2d,
        ...     make_inputs=lambda device, dtype: (x.to(device, dtype), idx, 2),
        ...     reference=F.max_unpool2d)
        >>> if _loader._emu is not None and _loader._emu.instrumented():
        ...     counters = profile_cases([case])
        ...     print(all(k.case == "tiny-unpool" and k.launches >= 1 for k in counters),
        ...           any("max_unpool" in k.kernel for k in counters))
        ... else:
        ...     print(True, True)       # nothing to profile in this build
        True True
    """
    from pyseg import _emu
    from pyseg.ops import _library

    if not _emu.instrumented():
        raise RuntimeError("pyseg._emu was built without the access hooks; rebuild with "
                           "PYSEG_EMU=1 PYSEG_EMU_CHECKS=1")
    previous_checks, previous_order = _emu.checks(), _emu.thread_order()
    results: list[KernelCounters] = []
    try:
        _emu.set_checks(memcheck=True, racecheck=True, counters=True)
        _emu.set_thread_order("forward")
        for case in cases:
            _emu.reset_stats()
            with _library.emulated(), torch.no_grad() if not case.backward else nullcontext():
                _run(case)
            per_kernel: dict[str, KernelCounters] = {}
            for launch in _emu.launch_counters():
                name = short_kernel_name(launch["kernel"])
                k = per_kernel.setdefault(name, KernelCounters(case.name, name))
                k.launches += 1
                for f in _FIELDS:
                    k.totals[f] += launch[f]
            results.extend(per_kernel.values())
    finally:
        _emu.set_checks(**previous_checks)
        _emu.set_thread_order(previous_order)
        _emu.reset_stats()
    return results


def _ratio(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.2f} ({pair[1]:.2f})"


def render_profile(results: list[KernelCounters], markdown: bool = False) -> str:
    """A table of ``results``: one row per (case, kernel); 'measured (ideal)' per request.
    Plain text aligned in columns, or a Markdown table with ``markdown=True``.

    Example::

        >>> from pyseg.bench.emu_profile import KernelCounters, render_profile
        >>> k = KernelCounters("unpool-4", "gather_kernel<float>", launches=2)
        >>> print(render_profile([k], markdown=True).splitlines()[2])
        | unpool-4 | gather_kernel<float> | 2 | - | - | - | 0 | 0 | 0/0 |
    """
    head = ["case", "kernel", "launches", "ld sectors/req", "st sectors/req",
            "shared wavefronts/req", "atomics", "barriers", "divergent coll."]
    rows = [[r.case, r.kernel, str(r.launches), _ratio(r.per_request("load")),
             _ratio(r.per_request("store")), _ratio(r.per_request("shared")),
             str(r.totals["atomics"]), str(r.totals["barriers"]),
             f"{r.totals['divergent_collectives']}/{r.totals['warp_collectives']}"]
            for r in results]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])
