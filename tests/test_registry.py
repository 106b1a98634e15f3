"""The plugin registry: built-ins, PYSEG_PLUGINS, entry points, isolation, public API and
``pyseg list``."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
import warnings

import pyseg_plugins
import pytest
import torch

import pyseg
from pyseg import registry
from pyseg.cli import main
from pyseg.data import resolve_dataset
from pyseg.registry import PluginError, PluginWarning

BUILTIN_ARCHITECTURES = {
    "pets-encdec", "fcn32s", "fcn16s", "fcn8s", "deconvnet", "segnet", "unet",
    "small-convnet", "mini-xception",
}

GOOD_PLUGIN = """
import pyseg

def build(num_classes=3, in_channels=3, depth=2):
    import torch
    return torch.nn.Conv2d(in_channels, num_classes, 1)

def explain(model, images, target=None, scale=1.0):
    return images.mean(1) * 0 + scale

@pyseg.hookimpl
def pyseg_architectures():
    return [pyseg.Architecture("{prefix}-net", build, summary="a test net",
                               default_kwargs={{"depth": 5}})]

@pyseg.hookimpl
def pyseg_interpreters():
    return [pyseg.Interpreter("{prefix}-explainer", explain, summary="a test explainer")]

@pyseg.hookimpl
def pyseg_datasets():
    return [pyseg.DatasetSpec("{prefix}-data", lambda **kw: [], summary="a test dataset")]

@pyseg.hookimpl
def pyseg_benchmarks():
    return [pyseg.BenchmarkCase("{prefix}-bench", "op", "small", lambda d, t: (),
                                lambda: None, lambda: None, summary="a test case")]
"""


@pytest.fixture
def clean(monkeypatch):
    """A registry that reloads from a controlled environment, and is reset afterwards."""
    for var in ("PYSEG_PLUGINS", "PYSEG_DISABLE_PLUGIN_AUTOLOAD", "PYSEG_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    registry.reload()
    yield monkeypatch
    registry.reload()


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write a uniquely named importable module; returns its name."""
    root = tmp_path / "mods"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    created = []

    def make(source: str) -> str:
        name = f"pyseg_test_plugin_{uuid.uuid4().hex[:8]}"
        (root / f"{name}.py").write_text(textwrap.dedent(source))
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


def load_with(monkeypatch, *modules: str):
    monkeypatch.setenv("PYSEG_PLUGINS", ",".join(modules))
    registry.reload()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry.plugins()
    return [w for w in caught if issubclass(w.category, PluginWarning)]


def names(listed: list[str]) -> set[str]:
    assert listed == sorted(listed) and all(isinstance(n, str) for n in listed)
    return set(listed)


# ----------------------------------------------------------------------------- built-ins


def test_builtins_load_strictly(clean):
    clean.setenv("PYSEG_STRICT_PLUGINS", "1")
    clean.setenv("PYSEG_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry.reload()
    assert BUILTIN_ARCHITECTURES <= names(pyseg.list_architectures())
    assert registry.plugin_failures() == []
    for name in pyseg.list_architectures():
        a = pyseg.get_architecture(name)
        assert a.plugin.source == "builtin"
        assert a.plugin.distribution == "torch-pyseg" and a.plugin.version == pyseg.__version__
        assert a.summary and len(a.tasks) == 1 and a.tasks <= {"segmentation", "classification"}
    assert names(pyseg.list_architectures(task="classification")) == {
        "small-convnet", "mini-xception", "stn", "acol"}  # acol: an ACoL head on either of them


def test_builtin_tuple_names_existing_modules():
    assert len(set(pyseg_plugins.BUILTIN)) == len(pyseg_plugins.BUILTIN)
    for module in pyseg_plugins.BUILTIN:
        importlib.import_module(module)  # no placeholder for a module that is not there


# ----------------------------------------------------------------------------- sources


def test_plugin_from_env(clean, make_module):
    mod = make_module(GOOD_PLUGIN.format(prefix="env"))
    assert load_with(clean, mod) == []
    arch = pyseg.get_architecture("env-net")
    assert arch.plugin.source == "env" and arch.plugin.module == mod
    assert arch.plugin.distribution is None
    assert "env-explainer" in names(pyseg.list_interpreters())
    assert "env-data" in names(pyseg.list_datasets())
    assert "env-bench" in names(pyseg.list_benchmarks())
    assert BUILTIN_ARCHITECTURES <= names(pyseg.list_architectures())


def write_distribution(site, dist: str, version: str, module: str, source: str,
                       ep_value: str | None = None):
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[pyseg]\n{module} = {ep_value or module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    modules = []
    yield path, modules
    for m in modules:
        sys.modules.pop(m, None)


def test_plugin_from_entry_point(clean, site):
    path, modules = site
    module = f"pyseg_ep_{uuid.uuid4().hex[:8]}"
    modules.append(module)
    write_distribution(path, "pyseg-demo-plugin", "1.2.3", module, GOOD_PLUGIN.format(prefix="ep"))
    registry.reload()
    arch = pyseg.get_architecture("ep-net")
    assert arch.plugin.source == "entrypoint"
    assert (arch.plugin.distribution, arch.plugin.version) == ("pyseg-demo-plugin", "1.2.3")
    assert pyseg.get_interpreter("ep-explainer").plugin.distribution == "pyseg-demo-plugin"
    assert registry.plugin_failures() == []

    clean.setenv("PYSEG_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry.reload()
    assert "ep-net" not in names(pyseg.list_architectures())
    assert BUILTIN_ARCHITECTURES <= names(pyseg.list_architectures())


def test_broken_entry_point_isolated(clean, site):
    path, modules = site
    good, bad = (f"pyseg_ep_{uuid.uuid4().hex[:8]}" for _ in range(2))
    modules += [good, bad]
    write_distribution(path, "pyseg-bad-plugin", "0.1", bad, "raise ImportError('no such dep')\n")
    write_distribution(path, "pyseg-good-plugin", "2.0", good, GOOD_PLUGIN.format(prefix="ok"))
    registry.reload()
    with pytest.warns(PluginWarning, match="no such dep"):
        failures = registry.plugin_failures()
    assert [(f.plugin, f.distribution, f.version) for f in failures] == [
        (bad, "pyseg-bad-plugin", "0.1")]
    assert "ImportError: no such dep" in failures[0].error
    assert "ok-net" in names(pyseg.list_architectures())


def test_same_module_twice_loads_once(clean, site):
    path, modules = site
    module = f"pyseg_ep_{uuid.uuid4().hex[:8]}"
    modules.append(module)
    write_distribution(path, "pyseg-twice", "1.0", module, GOOD_PLUGIN.format(prefix="tw"))
    assert load_with(clean, module) == []
    assert registry.plugin_failures() == []
    assert pyseg.get_architecture("tw-net").plugin.source == "entrypoint"


# ----------------------------------------------------------------------------- isolation


BROKEN = {
    "import": ("raise RuntimeError('boom at import')", "boom at import"),
    "hook": (
        """
        import pyseg
        @pyseg.hookimpl
        def pyseg_interpreters():
            return [pyseg.Interpreter("half-explainer", lambda m, x, target=None: x)]
        @pyseg.hookimpl
        def pyseg_architectures():
            raise ValueError("hook exploded")
        """,
        r"pyseg_architectures\(\) raised ValueError: hook exploded",
    ),
    "conflict": (
        """
        import pyseg
        @pyseg.hookimpl
        def pyseg_architectures():
            return [pyseg.Architecture("unet", lambda **kw: None)]
        """,
        r"architecture name 'unet' is already taken by torch-pyseg",
    ),
    "type": (
        """
        import pyseg
        @pyseg.hookimpl
        def pyseg_datasets():
            return [pyseg.Architecture("not-a-dataset", lambda **kw: None)]
        """,
        r"must return a list of pyseg.DatasetSpec, but an item is a Architecture",
    ),
    "not-a-list": (
        """
        import pyseg
        @pyseg.hookimpl
        def pyseg_benchmarks():
            return "oops"
        """,
        r"must return a list of pyseg.BenchmarkCase, got str",
    ),
    "typo": (
        """
        import pyseg
        @pyseg.hookimpl
        def pyseg_architecture():
            return []
        """,
        r"unknown hook 'pyseg_architecture'",
    ),
    "duplicate": (
        """
        import pyseg
        @pyseg.hookimpl
        def pyseg_interpreters():
            return [pyseg.Interpreter("dup", print), pyseg.Interpreter("dup", print)]
        """,
        r"two interpreters named 'dup'",
    ),
    "exit-at-import": ("import sys; sys.exit(7)", r"^import failed: SystemExit: 7$"),
    "exit-in-hook": (
        """
        import sys
        import pyseg
        @pyseg.hookimpl
        def pyseg_architectures():
            sys.exit(3)
        """,
        r"pyseg_architectures\(\) raised SystemExit: 3",
    ),
    "generator-exit": (
        """
        import pyseg
        @pyseg.hookimpl
        def pyseg_datasets():
            raise GeneratorExit("closed")
        """,
        r"pyseg_datasets\(\) raised GeneratorExit: closed",
    ),
    "fn-not-callable": (
        """
        import pyseg
        @pyseg.hookimpl
        def pyseg_architectures():
            return [pyseg.Architecture("bad-net", 42)]
        """,
        r"raised TypeError: architecture 'bad-net': fn must be callable, got int",
    ),
    "benchmark-not-callable": (
        """
        import pyseg
        @pyseg.hookimpl
        def pyseg_benchmarks():
            return [pyseg.BenchmarkCase("b", "op", "s", lambda d, t: (), "ours", print)]
        """,
        r"benchmark 'b': ours must be callable, got str",
    ),
    "registry-at-import": (
        "import pyseg; pyseg.list_architectures()",
        r"RuntimeError: the pyseg registry was used while its plugins were loading",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_plugin_is_reported_and_left_out(clean, make_module, kind):
    source, message = BROKEN[kind]
    bad = make_module(source)
    good = make_module(GOOD_PLUGIN.format(prefix="good"))
    caught = load_with(clean, bad, good)
    failures = registry.plugin_failures()
    assert len(failures) == 1 and failures[0].plugin == bad and failures[0].source == "env"
    assert re.search(message, failures[0].error), failures[0].error
    assert len(caught) == 1 and bad in str(caught[0].message)
    # The other plugins are untouched, and none of the broken plugin's specs got in.
    assert "good-net" in names(pyseg.list_architectures())
    assert BUILTIN_ARCHITECTURES <= names(pyseg.list_architectures())
    assert pyseg.get_architecture("unet").plugin.source == "builtin"
    assert "half-explainer" not in names(pyseg.list_interpreters())
    assert bad not in [p.name for p in registry.plugins()]
    assert not registry.get_plugin_manager().has_plugin(bad)


def test_missing_module_is_reported(clean):
    load_with(clean, "pyseg_no_such_module_xyz")
    (failure,) = registry.plugin_failures()
    assert failure.plugin == "pyseg_no_such_module_xyz"
    assert "ModuleNotFoundError" in failure.error


def test_keyboard_interrupt_is_not_swallowed(clean, make_module):
    clean.setenv("PYSEG_PLUGINS", make_module("raise KeyboardInterrupt"))
    registry.reload()
    with pytest.raises(KeyboardInterrupt):
        registry.plugins()


def test_strict_mode_reports_a_plugin_that_exits(clean, make_module):
    bad = make_module("import sys; sys.exit(7)")
    clean.setenv("PYSEG_STRICT_PLUGINS", "1")
    clean.setenv("PYSEG_PLUGINS", bad)
    registry.reload()
    with pytest.raises(PluginError, match=f"{bad}.*SystemExit: 7"):
        registry.plugins()


def test_strict_mode_raises(clean, make_module):
    bad = make_module("raise RuntimeError('strict boom')")
    clean.setenv("PYSEG_STRICT_PLUGINS", "1")
    clean.setenv("PYSEG_PLUGINS", bad)
    registry.reload()
    with pytest.raises(PluginError, match=f"{bad}.*strict boom") as info:
        pyseg.list_architectures()
    assert [f.plugin for f in info.value.failures] == [bad]


# ----------------------------------------------------------------------------- public API


def test_create_model(clean, make_module):
    load_with(clean, make_module(GOOD_PLUGIN.format(prefix="api")))
    model = pyseg.create_model("api-net", num_classes=5, in_channels=2)
    assert (model.in_channels, model.out_channels) == (2, 5)
    pyseg.create_model("api-net", depth=3)  # overrides default_kwargs
    with pytest.raises(TypeError, match="'dpeth'"):
        pyseg.create_model("api-net", dpeth=3)
    with pytest.raises(KeyError) as info:
        pyseg.create_model("api-nett")
    message = str(info.value)
    assert "unknown architecture 'api-nett'" in message and "Did you mean 'api-net'" in message
    assert "unet" in message and "fcn8s" in message


def test_create_builtin_model_checks_kwargs(clean):
    with pytest.raises(TypeError, match="'base_chanels'"):
        pyseg.create_model("unet", base_chanels=8)


def test_lookups(clean, make_module):
    load_with(clean, make_module(GOOD_PLUGIN.format(prefix="lk")))
    interp = pyseg.get_interpreter("lk-explainer")
    out = interp(None, torch.zeros(2, 3, 4, 4), scale=0.5)
    assert out.shape == (2, 4, 4) and float(out.max()) == 0.5
    assert pyseg.get_dataset("lk-data").fn() == []
    assert pyseg.get_benchmark("lk-bench").label == "op"
    assert names(pyseg.list_benchmarks(label="op")) >= {"lk-bench"}
    for getter, kind in ((pyseg.get_interpreter, "interpreter"), (pyseg.get_dataset, "dataset"),
                         (pyseg.get_benchmark, "benchmark")):
        with pytest.raises(KeyError, match=f"unknown {kind} 'nope'"):
            getter("nope")


# ----------------------------------------------------------------------------- spec classes


@pytest.mark.parametrize("cls", [pyseg.Architecture, pyseg.Interpreter, pyseg.DatasetSpec])
@pytest.mark.parametrize("tasks", ["classification", ["classification"], ("classification",),
                                   {"classification"}, frozenset({"classification"})])
def test_tasks_accept_a_string_or_any_collection(cls, tasks):
    assert cls("x", print, tasks=tasks).tasks == frozenset({"classification"})


@pytest.mark.parametrize("cls", [pyseg.Architecture, pyseg.Interpreter, pyseg.DatasetSpec])
def test_spec_arguments_are_checked(cls):
    assert isinstance(cls("x", print).tasks, frozenset)
    with pytest.raises(ValueError, match="tasks must be one or more"):
        cls("x", print, tasks=())
    with pytest.raises(ValueError, match="tasks must be one or more"):
        cls("x", print, tasks=[1])
    with pytest.raises(TypeError, match="tasks must be a string or a collection"):
        cls("x", print, tasks=3)
    with pytest.raises(ValueError, match="needs a non-empty name"):
        cls(" ", print)
    with pytest.raises(TypeError, match="'x': fn must be callable, got NoneType"):
        cls("x", None)
    with pytest.raises(TypeError, match="positional"):  # after name and fn: keywords only
        cls("x", print, "a summary")


def test_spec_defaults_and_fields():
    assert pyseg.Architecture("a", print).tasks == {"segmentation"}
    assert pyseg.Interpreter("i", print).tasks == {"segmentation", "classification"}
    assert pyseg.DatasetSpec("d", print).tasks == {"segmentation"}
    for bad in (0, -1, True, 1.5, "180"):
        with pytest.raises(ValueError, match="input_size must be a positive int"):
            pyseg.Architecture("a", print, input_size=bad)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['sede'\]; known: seed, length"):
        pyseg.DatasetSpec("d", print, options=("length", "sede"))
    spec = pyseg.DatasetSpec("d", print, class_names=["a", "b"], options=["seed"])
    assert spec.class_names == ("a", "b") and spec.options == ("seed",)
    kwargs = {"depth": 1}
    arch = pyseg.Architecture("a", print, default_kwargs=kwargs)
    kwargs["depth"] = 2  # the spec keeps its own copy
    assert arch.default_kwargs == {"depth": 1}


def test_specs_are_hashable(clean):
    # default_kwargs may hold unhashable values: it takes part in ==, not in the hash
    a = pyseg.Architecture("x", print, default_kwargs={"depth": [2]}, tasks=["segmentation"])
    b = pyseg.Architecture("x", print, default_kwargs={"depth": [2]})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != dataclasses.replace(a, default_kwargs={"depth": [3]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "y"
    for listed, get in ((pyseg.list_architectures, pyseg.get_architecture),
                        (pyseg.list_interpreters, pyseg.get_interpreter),
                        (pyseg.list_datasets, pyseg.get_dataset),
                        (pyseg.list_benchmarks, pyseg.get_benchmark)):
        specs = {get(name) for name in listed()}
        assert {s.name for s in specs} == set(listed())


def test_builtin_input_sizes_match_their_factories(clean):
    """``Architecture.input_size`` is the default of ``fn``'s ``input_size=`` (the CLI reads
    the spec, and passes ``input_size=`` only to architectures that declare one)."""
    for name in pyseg.list_architectures():
        arch = pyseg.get_architecture(name)
        param = inspect.signature(arch.fn).parameters.get("input_size")
        if arch.input_size is None:
            assert param is None, name
        else:
            assert param is not None and param.default == arch.input_size, name
    assert pyseg.get_architecture("small-convnet").input_size == 180


def test_builtin_interpreters_declare_layers(clean):
    takes_layer = {n for n in pyseg.list_interpreters() if pyseg.get_interpreter(n).takes_layer}
    assert takes_layer == {"cam", "gradcam", "gradcam++", "excitation-backprop", "layercam",
                           "hirescam", "xgradcam", "eigencam", "scorecam", "ablationcam"}
    assert pyseg.list_interpreters(task="classification") == [
        "ablationcam", "acol", "cam", "eigencam", "excitation-backprop", "gradcam", "gradcam++",
        "hide-and-seek", "hirescam", "layercam", "rise", "scorecam", "xgradcam"]
    assert "cam" not in pyseg.list_interpreters(task="segmentation")


DATA_PLUGIN = """
import pyseg

calls = []

def make(**kwargs):
    calls.append(kwargs)
    return []

@pyseg.hookimpl
def pyseg_datasets():
    return [
        pyseg.DatasetSpec("opt-data", make, tasks=("segmentation", "classification"),
                          options=("length",), class_names=("a", "b")),
        pyseg.DatasetSpec("plain-data", make),
    ]
"""


def test_resolve_dataset_reads_the_spec(clean, make_module):
    module = make_module(DATA_PLUGIN)
    assert load_with(clean, module) == []
    calls = sys.modules[module].calls
    base = {"root": None, "img_size": 32}
    _, class_names = resolve_dataset("opt-data", "val", 32, seed=5, train_length=7,
                                     val_length=3)
    assert calls[-1] == {**base, "split": "val", "task": "segmentation", "length": 3}
    assert class_names == ["a", "b"]
    resolve_dataset("opt-data", "train", 32, "classification", seed=5)
    assert calls[-1] == {**base, "split": "train", "task": "classification"}
    resolve_dataset("plain-data", "train", 32, seed=5, train_length=7)
    assert calls[-1] == {**base, "split": "train", "task": "segmentation"}
    with pytest.raises(ValueError, match="'plain-data' provides segmentation, not classif"):
        resolve_dataset("plain-data", "train", 32, "classification")
    with pytest.raises(ValueError, match="no dataset named 'no-data' and no such folder"):
        resolve_dataset("no-data", "train", 32)


# ----------------------------------------------------------------------------- pyseg list


def test_list_command_json(clean, make_module, capsys):
    good = make_module(GOOD_PLUGIN.format(prefix="cli"))
    bad = make_module("raise RuntimeError('cli boom')")
    clean.setenv("PYSEG_PLUGINS", f"{good},{bad}")
    registry.reload()
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    archs = {a["name"]: a for a in data["architectures"]}
    assert BUILTIN_ARCHITECTURES <= set(archs)
    assert archs["unet"]["plugin"]["distribution"] == "torch-pyseg"
    assert (archs["unet"]["tasks"], archs["unet"]["input_size"]) == (["segmentation"], None)
    assert (archs["small-convnet"]["tasks"], archs["small-convnet"]["input_size"]) == (
        ["classification"], 180)
    interps = {i["name"]: i for i in data["interpreters"]}
    assert interps["gradcam"]["takes_layer"] and not interps["hide-and-seek"]["takes_layer"]
    pets = {d["name"]: d for d in data["datasets"]}["synthetic-pets"]
    assert pets["tasks"] == ["classification", "segmentation"]
    assert pets["options"] == ["seed", "length"]
    assert archs["cli-net"]["plugin"]["module"] == good
    assert {i["name"] for i in data["interpreters"]} >= {"cli-explainer"}
    assert {d["name"] for d in data["datasets"]} >= {"cli-data"}
    assert {b["name"] for b in data["benchmarks"]} >= {"cli-bench"}
    (failed,) = data["failed_plugins"]
    assert failed["plugin"] == bad and "cli boom" in failed["error"]


def test_list_command_text(clean, make_module, capsys):
    bad = make_module("raise RuntimeError('text boom')")
    clean.setenv("PYSEG_PLUGINS", bad)
    registry.reload()
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for heading in ("Architectures", "Interpreters", "Datasets", "Benchmarks", "Failed plugins"):
        assert heading in out
    assert "pets-encdec" in out and "from torch-pyseg " in out
    assert bad in out and "text boom" in out


def test_list_command_strict_fails(clean, make_module, capsys):
    clean.setenv("PYSEG_PLUGINS", make_module("raise RuntimeError('strict cli')"))
    clean.setenv("PYSEG_STRICT_PLUGINS", "1")
    registry.reload()
    assert main(["list"]) == 1
    assert "strict cli" in capsys.readouterr().err


def test_list_command_plugin_option_subprocess(tmp_path):
    (tmp_path / "pyseg_cli_opt_plugin.py").write_text(GOOD_PLUGIN.format(prefix="opt"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSEG_PLUGINS", "PYSEG_STRICT_PLUGINS")}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pyseg", "--plugin", "pyseg_cli_opt_plugin", "list", "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "opt-net" in {a["name"] for a in data["architectures"]}
    assert data["failed_plugins"] == []


def test_env_plugin_is_found_in_the_current_directory(clean, tmp_path):
    """``PYSEG_PLUGINS`` modules are looked up in the current directory (as ``python -m``
    does), which is on ``sys.path`` only while they are imported."""
    module = f"pyseg_cwd_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(GOOD_PLUGIN.format(prefix="cwd"))
    clean.chdir(tmp_path)
    clean.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    try:
        assert load_with(clean, module) == []
        assert pyseg.get_architecture("cwd-net").plugin.module == module
    finally:
        sys.modules.pop(module, None)
    assert str(tmp_path) not in sys.path


def _readme_plugin() -> str:
    """The complete plugin example of README.md ("Writing a plugin")."""
    docs = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", docs.read_text(), re.DOTALL)
    (example,) = [b for b in blocks if "@pyseg.hookimpl" in b]
    return example


def test_readme_plugin_command_with_the_console_script(tmp_path):
    """README: ``PYSEG_PLUGINS=tinyseg pyseg list`` next to ``tinyseg.py``, run by the
    installed ``pyseg`` script (whose ``sys.path`` does not start with the current folder)."""
    script = shutil.which("pyseg", path=str(pathlib.Path(sys.executable).parent))
    assert script, f"no pyseg console script next to {sys.executable}: pip install -e ."
    (tmp_path / "tinyseg.py").write_text(_readme_plugin())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSEG_")}
    env.update(PYSEG_PLUGINS="tinyseg", PYSEG_STRICT_PLUGINS="1")
    proc = subprocess.run([script, "list", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    archs = {a["name"]: a for a in data["architectures"]}
    assert archs["tinyseg"]["plugin"]["module"] == "tinyseg"
    assert "gradmag" in {i["name"] for i in data["interpreters"]}


# ----------------------------------------------------------------------------- the docs


def test_docs_example_plugin_works(clean, make_module):
    """The complete example in README.md ("Writing a plugin") loads and runs."""
    assert load_with(clean, make_module(_readme_plugin())) == []
    model = pyseg.create_model("tinyseg", num_classes=2, hidden=4)
    x = torch.rand(2, 3, 8, 8)
    assert model(x).shape == (2, 2, 8, 8)
    heat = pyseg.get_interpreter("gradmag")(model, x)
    assert heat.shape == (2, 8, 8) and 0 <= float(heat.min()) and float(heat.max()) <= 1
    with pytest.raises(TypeError, match="'hiden'"):
        pyseg.create_model("tinyseg", hiden=4)
