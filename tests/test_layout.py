"""The package's architecture, checked from its source: one-way layers, no import cycles,
processes started or signalled only by backends, and an experiment's definition declared once.

The layers, lowest first (a module may import its own layer and the ones below it, never above):
the foundation (``errors``, ``printable``, ``proc``, ``limits``), ``devices`` and ``spec``, ``state``,
``backends``, ``run``, ``ui``; ``compat`` (the old launcher) stands beside ``ui`` and uses ``spec``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "pbtrun"

PROCESS_MODULES = {"subprocess", "multiprocessing", "pty", "concurrent", "asyncio"}
PROCESS_CALLS = {
    "fork",
    "forkpty",
    "kill",
    "killpg",
    "system",
    "popen",
    "posix_spawn",
    "posix_spawnp",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "pidfd_send_signal",
}
SIGNAL_CALLS = {"kill", "killpg", "fork"}


def modules() -> dict[str, ast.Module]:
    """Every module of the package, by path relative to ``pbtrun/`` (``backends/local.py``)."""
    found = {str(p.relative_to(PACKAGE)): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}
    assert "run/scheduler.py" in found
    assert "backends/local.py" in found
    return found


def imported(tree: ast.Module, module_path: str) -> set[str]:
    """Fully qualified names of every module imported anywhere in ``tree`` (also inside functions)."""
    package = ["pbtrun", *Path(module_path).parent.parts]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{alias.name}" for alias in node.names)
    return names


def os_calls(tree: ast.Module) -> set[str]:
    """Names of ``os.X(...)`` calls, and of ``X`` imported from ``os`` (``from os import fork``)."""
    calls: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if isinstance(target, ast.Name) and target.id in ("os", "posix"):
                calls.add(node.func.attr)
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "posix"):
            calls.update(alias.name for alias in node.names)
    return calls


def tops(names: Iterable[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (inside functions too)."""
    trees = modules()
    names = {path: ("pbtrun/" + path[:-3]).replace("/", ".").removesuffix(".__init__") for path in trees}
    known = set(names.values())
    graph: dict[str, set[str]] = {}
    for path, tree in trees.items():
        deps = set()
        for imp in imported(tree, path):
            parts = imp.split(".")
            found = next((m for k in range(len(parts), 0, -1) if (m := ".".join(parts[:k])) in known), None)
            if found is not None and found != names[path]:
                deps.add(found)
        graph[names[path]] = deps
    return graph


def test_the_package_has_no_import_cycle():
    """One-way layers: no module imports, even lazily, a module that imports it back."""
    graph = import_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for dep in sorted(graph.get(module, ())):
            visit(dep, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert "pbtrun.ui.live" in graph["pbtrun.ui.views"]  # the scan is not vacuous: it sees lazy imports


def test_placement_does_not_know_the_spec():
    """GPUs are placed from the resolved settings (pbtrun.run.settings reads the spec's)."""
    assert not {m for m in import_graph()["pbtrun.run.gpus"] if m.startswith("pbtrun.spec")}


def test_errors_module_imports_no_other_pbtrun_module():
    tree = modules()["errors.py"]
    assert not {n for n in imported(tree, "errors.py") if n == "pbtrun" or n.startswith("pbtrun.")}


SPEC_MODULES = sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "spec").glob("*.py"))
# The state's records, their JSON codec and format migrations, pbtrun.json's byte layout, the
# merge of an edited spec and the checker of a damaged state: no I/O (the rest of pbtrun.state does it).
PURE_STATE = [
    "state/records.py",
    "state/codec.py",
    "state/migrations.py",
    "state/layout.py",
    "state/merge.py",
    "state/check.py",
]
STATE_IO = {f"pbtrun.state.{name}" for name in ("store", "files", "journal", "locks", "writer", "control", "paths")}


@pytest.mark.parametrize("module", [*SPEC_MODULES, *PURE_STATE, "ui/words.py", "ui/statusjson.py", "ui/plans.py"])
def test_pure_modules_do_not_touch_processes(module):
    tree = modules()[module]
    assert not tops(imported(tree, module)) & PROCESS_MODULES
    assert not os_calls(tree) & PROCESS_CALLS


def test_only_backends_start_or_signal_processes():
    offenders = {}
    for path, tree in modules().items():
        if path.startswith("backends/") or path == "ui/forkedwork.py":
            continue  # forkedwork forks a copy of pbtrun itself to share CPU work, never an experiment
        if path == "devices/smi.py":
            continue  # runs nvidia-smi, a read-only query of the driver, where NVML cannot be loaded
        bad = (os_calls(tree) & PROCESS_CALLS) | (tops(imported(tree, path)) & PROCESS_MODULES)
        if bad:
            offenders[path] = sorted(bad)
    assert not offenders
    # The scan is not vacuous: it does see the backend doing exactly this.
    backends = set().union(*(os_calls(tree) for path, tree in modules().items() if path.startswith("backends/")))
    assert {"fork", "killpg", "posix_spawnp"} <= backends


def test_only_the_cli_modules_import_click():
    """click is the command line's, in ui/cli*.py: `pbtrun up SPEC` runs commands.py, parsed by
    quickargs.py from runoptions.py, and shows its progress, all without loading click."""
    trees = modules()
    importers = {path for path, tree in trees.items() if "click" in tops(imported(tree, path))}
    assert importers and all(path.startswith("ui/cli") for path in importers), sorted(importers)
    for path in ("ui/commands.py", "ui/quickargs.py", "ui/runoptions.py"):
        assert not {n for n in imported(trees[path], path) if n.startswith("pbtrun.ui.cli")}, path


def test_scheduler_neither_starts_processes_itself_nor_parses_toml():
    names = tops(imported(modules()["run/scheduler.py"], "run/scheduler.py"))
    assert not names & {"subprocess", "tomllib", "tomli"}


def test_the_run_layer_knows_backends_only_through_their_interface():
    """The scheduler opens a backend by name and talks to it through ``backends/base.py``: no
    module of ``run/`` imports a backend itself (its reapers, process groups, orphans)."""
    graph = import_graph()
    interface = {"pbtrun.backends.base", "pbtrun.backends.registry"}
    for module, deps in graph.items():
        if module.startswith("pbtrun.run."):
            assert {d for d in deps if d.startswith("pbtrun.backends")} <= interface, module
    assert "pbtrun.backends.registry" in graph["pbtrun.run.scheduler"]  # not vacuous


def test_the_backend_interface_names_no_backend():
    graph = import_graph()
    assert not {d for d in graph["pbtrun.backends.base"] if d.startswith("pbtrun.backends")}
    assert "pbtrun.backends.local" in graph["pbtrun.backends.registry"]  # opened by name, lazily


def test_state_and_naming_do_no_io_or_locking():
    for module in (*PURE_STATE, "spec/naming.py"):
        names = imported(modules()[module], module)
        assert not tops(names) & {"fcntl", "os", "shutil", "tempfile", "threading"}, module
        assert not names & {*STATE_IO, "pbtrun.run.scheduler", "pbtrun.backends"}, module
        calls = {
            n.func.id for n in ast.walk(modules()[module]) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        assert "open" not in calls, module


@pytest.mark.parametrize("module", SPEC_MODULES)
def test_spec_layer_never_reaches_the_state_file_or_backends(module):
    names = imported(modules()[module], module)
    assert not names & {
        "pbtrun.state.store",
        "pbtrun.state.records",
        "pbtrun.run.scheduler",
        "pbtrun.backends",
        "pbtrun.backends.local",
    }
    assert "fcntl" not in tops(names)


def test_the_old_launchers_import_uses_only_the_spec_layer():
    """``pbtrun import`` reads a run module and writes a spec: no state, no backend, no scheduler."""
    graph = import_graph()
    compat = [module for module in graph if module.startswith("pbtrun.compat")]
    assert "pbtrun.spec.reading" in graph["pbtrun.compat.importer"]  # not vacuous
    for module in compat:
        assert all(layer_of(dep) <= LAYERS["spec"] or dep.startswith("pbtrun.compat") for dep in graph[module]), module


LAYERS = {"devices": 1, "spec": 1, "state": 2, "backends": 3, "run": 4, "ui": 5, "compat": 5}
FOUNDATION = {"pbtrun", "pbtrun.errors", "pbtrun.printable", "pbtrun.proc", "pbtrun.limits"}


def layer_of(module: str) -> int:
    """0 for the foundation, else the rank of the module's package in :data:`LAYERS`."""
    if module in FOUNDATION or module == "pbtrun.__main__":
        return 0
    return LAYERS[module.split(".")[1]]


def test_every_module_sits_in_a_known_layer():
    """A new top-level module must be placed in a layer on purpose (and named in this file)."""
    for module in import_graph():
        if module != "pbtrun.__main__":
            assert module in FOUNDATION or module.split(".")[1] in LAYERS, module


def test_layers_import_only_downwards():
    offenders = []
    for module, deps in import_graph().items():
        if module == "pbtrun.__main__":
            continue  # the entry point: it picks the command line's fastest path
        for dep in deps:
            if layer_of(dep) > layer_of(module) or (
                dep.startswith("pbtrun.compat")
                and not module.startswith("pbtrun.compat")
                and not module.startswith("pbtrun.ui")
            ):
                offenders.append(f"{module} -> {dep}")
    assert not offenders
    assert "pbtrun.state.records" in import_graph()["pbtrun.run.scheduler"]  # not vacuous


def test_the_devices_package_reads_only_the_foundation():
    """The GPU inventory is read by the scheduler, the views and `pbtrun gpus`: it knows no spec,
    state or backend, only the foundation (and pynvml, lazily)."""
    graph = import_graph()
    devices = [module for module in graph if module.startswith("pbtrun.devices")]
    assert "pbtrun.devices.inventory" in devices  # not vacuous
    for module in devices:
        assert all(dep in FOUNDATION or dep.startswith("pbtrun.devices") for dep in graph[module]), module


def test_the_foundation_imports_only_the_foundation():
    for module, deps in import_graph().items():
        if module in FOUNDATION:
            assert deps <= FOUNDATION, module


def test_an_experiments_definition_is_declared_once():
    """The state's ``Experiment`` holds the spec layer's ``ExperimentSpec`` and adds only its
    history: it declares none of the definition's fields itself, so the two cannot drift apart
    and a merge replaces a definition instead of copying it field by field."""
    from pbtrun.spec.model import ExperimentSpec
    from pbtrun.state.records import Experiment

    assert Experiment._fields == ("spec", "status", "attempts", "removed")
    assert not set(Experiment._fields) & set(ExperimentSpec._fields)
    # Identity is read everywhere: it is at hand, read from the definition, never stored twice.
    spec = ExperimentSpec("id0", "g", 0, "00_g", ("prog",), {}, {})
    exp = Experiment(spec)
    assert (exp.id, exp.name) == (spec.id, spec.name)
    assert isinstance(Experiment.id, property) and isinstance(Experiment.name, property)
