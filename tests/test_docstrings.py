"""Every public function and class of the documented modules has its own docstring, which
describes each argument and shows a ``>>>`` example (the examples run in test_doctests.py).

Public: in the module's ``__all__`` (or, for a module without one, defined there under a name
without a leading underscore). The arguments of a class are those of its ``__init__``
(dataclass fields included), described in the class docstring or in ``__init__``'s. An
argument counts as described when its name appears in the docstring as a word: in an
``Args:`` section or in the prose, as the existing docstrings do.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

# The modules of the API reference (docs/api) and the public modules around them.
# pyseg.ops and pyseg.nn (but convert) have their own check in test_doctests.py.
MODULES = [
    "pyseg", "pyseg.info", "pyseg.routing", "pyseg.palette", "pyseg.hookspecs",
    "pyseg.registry", "pyseg.registry.specs", "pyseg.registry.loading", "pyseg.registry.kwargs",
    "pyseg.engine", "pyseg.engine.metrics",
    "pyseg.interpret.core", "pyseg.interpret.metrics", "pyseg.interpret.pointing",
    "pyseg.interpret.overlay",
    "pyseg.bench", "pyseg.bench.harness", "pyseg.bench.report", "pyseg.bench.trust",
    "pyseg.bench.emu_profile", "pyseg.bench.models", "pyseg.bench.user_model",
    "pyseg.data", "pyseg.data.oxford", "pyseg.data.folder", "pyseg.data.patch_hiding",
    "pyseg.nn.convert",
]

# Explicit exceptions, each with its reason.
ARGS_DESCRIBED_ELSEWHERE = {
    # Built like their pyseg.nn base classes, whose docstrings describe the arguments (and
    # usually by pyseg.nn.convert from an existing module, not by hand).
    "pyseg.nn.convert.ConvertedConvTranspose2d", "pyseg.nn.convert.ConvertedUpsample",
    "pyseg.nn.convert.ConvertedMaxUnpool2d", "pyseg.nn.convert.ConvertedDeformConv2d",
}


def public_objects(name: str) -> list[tuple[str, object]]:
    """``(qualified name, object)`` of every public function and class of module ``name``."""
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == name]
    objects = [(f"{name}.{n}", getattr(module, n)) for n in names]
    return [(q, o) for q, o in objects if inspect.isclass(o) or inspect.isfunction(o)]


def parameters(obj: object) -> list[str]:
    """The argument names a user passes (``self`` and ``cls`` left out)."""
    fn = obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]
    if not inspect.isfunction(fn):  # object's or an exception's builtin __init__
        return []
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature
        return []
    return [p for p in sig.parameters if p not in ("self", "cls")]


def docstring(obj: object) -> str:
    """The object's own docstring, plus its ``__init__``'s for a class."""
    doc = obj.__doc__ or ""
    if inspect.isclass(obj):
        for klass in obj.__mro__[1:]:  # a docstring inherited unchanged is not its own
            if doc and doc == klass.__doc__:
                doc = ""
        init = vars(obj).get("__init__")
        doc += "\n" + (getattr(init, "__doc__", None) or "")
    return inspect.cleandoc(doc)


def problems(qualname: str, obj: object) -> list[str]:
    doc = docstring(obj)
    if not doc.strip():
        return [f"{qualname}: no docstring of its own"]
    found = []
    if ">>>" not in doc:
        found.append(f"{qualname}: no >>> example")
    if qualname not in ARGS_DESCRIBED_ELSEWHERE:
        missing = [p for p in parameters(obj) if not re.search(rf"\b{re.escape(p)}\b", doc)]
        if missing:
            found.append(f"{qualname}: arguments not described: {', '.join(missing)}")
    return found


@pytest.mark.parametrize("name", MODULES)
def test_public_objects_are_documented(name: str):
    found = public_objects(name)
    assert found, f"{name} has no public function or class: remove it from MODULES"
    bad = [p for qualname, obj in found for p in problems(qualname, obj)]
    assert not bad, "\n".join(bad)


def test_the_check_fails_for_what_it_should():
    def undocumented(x):
        pass

    def no_example(x):
        """Return ``x``."""

    def missing_argument(x, y):
        """Return ``x``.

        >>> missing_argument(1, 2)
        """

    def documented(x):
        """Return ``x``.

        >>> documented(1)
        """

    assert problems("undocumented", undocumented) == ["undocumented: no docstring of its own"]
    assert problems("no_example", no_example) == ["no_example: no >>> example"]
    assert problems("missing_argument", missing_argument) == [
        "missing_argument: arguments not described: y"]
    assert problems("documented", documented) == []

    class Inherits(ValueError):
        pass

    assert problems("Inherits", Inherits) == ["Inherits: no docstring of its own"]


def test_every_documented_module_is_checked():
    # The API reference's automodule directives name no module this test leaves out.
    api = Path(__file__).resolve().parents[1] / "docs" / "api"
    documented = set()
    for page in api.glob("*.rst"):
        documented |= set(re.findall(r"^\.\. automodule:: (\S+)", page.read_text(),
                                         re.MULTILINE))
    # pyseg.ops / pyseg.nn: checked in test_doctests.py; pyseg.interpret: a package that
    # only re-exports pyseg.interpret.core; pyseg.interpret.acol: an interpreter's own
    # module, documented with its plugin.
    elsewhere = {"pyseg.ops", "pyseg.nn", "pyseg.interpret", "pyseg.interpret.acol"}
    assert documented - elsewhere - set(MODULES) == set()


if __name__ == "__main__":  # python tests/test_docstrings.py: list what is missing
    seen: dict[int, str] = {}
    for module_name in MODULES:
        for qualname, obj in public_objects(module_name):
            seen.setdefault(id(obj), qualname)
            for line in problems(qualname, obj):
                print(line)
    print(f"{len(seen)} public functions and classes in {len(MODULES)} modules")
