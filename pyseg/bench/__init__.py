"""The benchmark harness behind ``pyseg bench``.

Cases are :class:`pyseg.registry.BenchmarkCase` specs returned by the ``pyseg_benchmarks``
hook (built-in ones in ``pyseg_plugins.benchmarks``); any plugin can add its own. Each case
is checked once (ours must agree with the reference, :func:`check_agreement`; a float32
disagreement is judged against a float64 run of both sides) and then timed against the
reference in the same run with ``torch.utils.benchmark``; rows whose numbers cannot be
trusted are marked (:mod:`pyseg.bench.trust`)::

    import pyseg.bench
    facts = pyseg.bench.machine_facts()          # before: the load other work puts on us
    print(pyseg.bench.competition_warning(facts) or "quiet enough")
    results = pyseg.bench.run(pyseg.bench.collect_cases(), min_run_time=0.5)
    print(pyseg.bench.render(results))           # ends with the summary line
    facts = pyseg.bench.machine_facts(start=facts)
    pyseg.bench.write_json("bench.json", results, machine=facts)
    pyseg.bench.plot("bench.png", results)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pyseg.bench.harness import (
    DTYPES,
    CaseResult,
    Disagreement,
    Timing,
    check_agreement,
    default_rtol,
    peak_memory,
    run,
    run_case,
)
from pyseg.bench.report import (
    compare_table,
    competition_warning,
    header,
    machine_facts,
    markdown,
    plot,
    ratio_table,
    render,
    results_from_json,
    to_json,
    write_json,
)
from pyseg.bench.trust import mark_unreliable, summary
from pyseg.registry import BenchmarkCase

__all__ = [
    "DTYPES", "BenchmarkCase", "CaseResult", "Disagreement", "Timing", "check_agreement",
    "collect_cases", "compare_table", "competition_warning", "default_rtol", "header",
    "machine_facts", "mark_unreliable", "markdown", "peak_memory", "plot", "pyseg_op",
    "ratio_table", "render", "requires_pyseg_op", "results_from_json", "run", "run_case",
    "select", "summary", "to_json", "write_json",
]


def pyseg_op(name: str) -> Callable[..., Any]:
    """``pyseg.ops.<name>`` looked up at call time, so a case can name an op that this
    build does not have yet (pair it with :func:`requires_pyseg_op`). A missing ``name``
    raises ``AttributeError`` only when called.

    Example::

        >>> from pyseg.bench import pyseg_op
        >>> up = pyseg_op("interpolate")
        >>> up.__name__, up(torch.rand(1, 1, 2, 2), scale_factor=2).shape
        ('pyseg.ops.interpolate', torch.Size([1, 1, 4, 4]))
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        import pyseg.ops

        return getattr(pyseg.ops, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"pyseg.ops.{name}"
    return call


def requires_pyseg_op(name: str) -> Callable[..., str | None]:
    """A ``requires`` callable: ``"unavailable (pyseg.ops.<name> missing)"`` while the op is
    not in :mod:`pyseg.ops` (``name`` is the op's name there), else None.

    Example::

        >>> from pyseg.bench import requires_pyseg_op
        >>> print(requires_pyseg_op("interpolate")("cpu", torch.float32))
        None
        >>> requires_pyseg_op("no_such_op")("cpu", torch.float32)
        'unavailable (pyseg.ops.no_such_op missing)'
    """

    def requires(device: Any = None, dtype: Any = None) -> str | None:
        import pyseg.ops

        if not callable(getattr(pyseg.ops, name, None)):
            return f"unavailable (pyseg.ops.{name} missing)"
        return None

    return requires


def collect_cases() -> list[BenchmarkCase]:
    """Every case from the ``pyseg_benchmarks`` hook of every loaded plugin (built-ins,
    entry points, ``PYSEG_PLUGINS``): :func:`pyseg.registry.list_benchmarks`, in name order.

    Example::

        >>> from pyseg.bench import collect_cases
        >>> cases = collect_cases()
        >>> [c.name for c in cases] == pyseg.list_benchmarks()
        True
    """
    from pyseg import registry

    return [registry.get_benchmark(name) for name in registry.list_benchmarks()]


def select(
    cases: Iterable[BenchmarkCase],
    ops: Iterable[str] = (),
    *,
    quick: bool = False,
    backward: bool = False,
) -> list[BenchmarkCase]:
    """The cases ``pyseg bench`` runs.

    ``ops``: keep cases whose ``label`` or ``name`` is one of them (all when empty; a name
    matching nothing raises ``KeyError`` naming the known labels). ``quick``: only the
    ``quick`` cases, else only the others. ``backward``: forward + backward cases as well as
    forward ones, else forward only. A case named in ``ops`` is kept regardless of
    ``quick`` and ``backward``. ``cases`` are :class:`~pyseg.registry.BenchmarkCase` specs
    (e.g. :func:`collect_cases`); the result is in display order.

    Example::

        >>> import pyseg.bench
        >>> def add_case(name, quick=False, backward=False):
        ...     return pyseg.BenchmarkCase(
        ...         name, "add", "4x4", make_inputs=lambda device, dtype: (
        ...             torch.ones(4, 4, device=device, dtype=dtype),) * 2,
        ...         ours=torch.add, reference=lambda a, b: a + b, quick=quick, backward=backward)
        >>> cases = [add_case("a"), add_case("b", quick=True), add_case("c", backward=True)]
        >>> [c.name for c in pyseg.bench.select(cases)]
        ['a']
        >>> [c.name for c in pyseg.bench.select(cases, backward=True)]
        ['a', 'c']
        >>> [c.name for c in pyseg.bench.select(cases, ["b"])]
        ['b']
        >>> pyseg.bench.select(cases, ["mul"])
        Traceback (most recent call last):
        ...
        KeyError: 'no benchmark named mul (ops with cases: add)'
    """
    cases = list(cases)
    ops = list(ops)
    known = {c.label for c in cases} | {c.name for c in cases}
    unknown = [op for op in ops if op not in known]
    if unknown:
        labels = ", ".join(sorted({c.label for c in cases})) or "none"
        raise KeyError(f"no benchmark named {', '.join(unknown)} (ops with cases: {labels})")
    chosen = []
    for c in cases:
        if c.name in ops:  # a case asked for by name runs whatever its kind
            chosen.append(c)
            continue
        if ops and c.label not in ops:
            continue
        if bool(c.quick) != quick:
            continue
        if c.backward and not backward:
            continue
        chosen.append(c)
    # Display order: ops in order of first appearance; in each, the fixed shapes, then the
    # sweeps by size (the registry lists cases by name, where "128" sorts before "16").
    first = {label: i for i, label in reversed(list(enumerate(c.label for c in chosen)))}
    chosen.sort(key=lambda c: (first[c.label], bool(c.sweep), c.sweep, c.size, c.name))
    return chosen
