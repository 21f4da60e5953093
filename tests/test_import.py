"""``pbtrun import``: a run module becomes a spec that compiles to the old launcher's experiments.

The equivalence guarantee is checked against ``old_launcher``, an independent re-implementation of
the old launcher's ``generate_experiments`` that is itself checked against what the real launcher
produced (``../shared/compat/expected.json``). Pure Python: the run modules are imported in this
process, with pbtrun's stand-in for the launcher (neither Sample Factory nor IsaacGymEnvs is needed).
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import old_launcher
import pytest
from helpers import CASES, COMPAT, TRAIN_DIR

from pbtrun.compat import launcher as launcher_compat
from pbtrun.compat.importer import to_toml
from pbtrun.compat.launcher import Experiment, ParamGrid, ParamList, RunDescription
from pbtrun.compat.run_module import load_run_module
from pbtrun.errors import SpecError
from pbtrun.spec.expansion import expand
from pbtrun.spec.reading import parse


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Every import must leave the interpreter as it found it: no stand-ins, no extra paths."""
    meta_path, path = list(sys.meta_path), list(sys.path)
    yield
    assert sys.meta_path == meta_path
    assert sys.path == path
    for name in ("sample_factory", "isaacgymenvs"):
        module = sys.modules.get(name)
        assert module is None or "pbtrun" not in (module.__doc__ or ""), f"stand-in {name} left in sys.modules"


# --------------------------------------------------------------------------- comparing experiments


def _old(target: str, suffix: str | None = None, *, joined: bool = False) -> list[dict[str, Any]]:
    """What the old launcher generates for the module (via the oracle)."""
    rd = copy.copy(load_run_module(target)[1])  # a copy: a dotted module is cached, leave it as it was
    if suffix is not None:
        rd.experiment_suffix = suffix
    return [
        {"name": name, "argv": cmd if joined else cmd.split(" "), "env": env or {}}
        for cmd, name, _root, env in old_launcher.generate_experiments(rd, TRAIN_DIR)
    ]


def _new(text: str, *, joined: bool = False) -> list[dict[str, Any]]:
    """What pbtrun compiles from the imported spec."""
    spec = parse(text, Path("imported.toml"))
    return [
        {"name": e.name, "argv": " ".join(e.argv) if joined else list(e.argv), "env": e.env}
        for e in expand(spec, TRAIN_DIR)
    ]


def _side_by_side(index: int, want: dict[str, Any] | None, got: dict[str, Any] | None) -> str:
    """The first differing experiment, field by field and argv word by word: old launcher | pbtrun."""
    lines = [f"experiment #{index} differs (old launcher | pbtrun):"]
    if want is None or got is None:
        return "\n".join([*lines, f"  old:    {want!r}", f"  pbtrun: {got!r}"])
    for key in ("name", "env"):
        mark = "  " if want[key] == got[key] else "!!"
        lines.append(f"{mark} {key:<5} {want[key]!r:<60} | {got[key]!r}")
    words = [(want["argv"], got["argv"])] if isinstance(want["argv"], str) else []
    words = words or list(itertools.zip_longest(want["argv"], got["argv"], fillvalue="<none>"))
    lines.append("   argv:")
    for k, (w, g) in enumerate(words):
        lines.append(f"{'  ' if w == g else '!!'} [{k:2}] {w!r:<70} | {g!r}")
    return "\n".join(lines)


def assert_same_experiments(want: list[dict[str, Any]], got: list[dict[str, Any]]) -> None:
    for index, (w, g) in enumerate(itertools.zip_longest(want, got)):
        if w != g:
            pytest.fail(_side_by_side(index, w, g), pytrace=False)
    assert want, "no experiments compared"


def assert_equivalent(target: str, suffix: str | None = None, *, joined: bool = False) -> str:
    """Import ``target``; pbtrun's experiments must be the old launcher's. Returns the TOML text."""
    text = to_toml(target, suffix)
    assert_same_experiments(_old(target, suffix, joined=joined), _new(text, joined=joined))
    return text


def write_module(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


# --------------------------------------------------------------------------- (a) the oracle itself


@pytest.mark.parametrize("case", CASES)
def test_oracle_reproduces_the_real_launcher(case: str, expected: dict[str, Any]) -> None:
    """The oracle is only worth trusting if it gives, byte for byte, what the real launcher gave."""
    reference = expected[case]
    rd = load_run_module(str(COMPAT / reference["module"]))[1]
    rd.experiment_suffix = reference["experiment_suffix"]
    got = [
        {"cmd": cmd, "name": name, "root_dir": root, "env_vars": env}
        for cmd, name, root, env in old_launcher.generate_experiments(rd, reference["train_dir"], makedirs=False)
    ]
    assert got == reference["experiments"]


def test_oracle_shorthands_follow_the_launcher() -> None:
    taken: list[str] = []
    for param in ("train.lr", "train.lr_decay", "lr", "l", "model.encoder.hidden_size"):
        taken.append(old_launcher.shorthand(param, taken))
    assert taken == ["t.lr", "t.l.dec", "lr", "l", "m.e.h.siz"]
    assert old_launcher.shorthand("seed", ["see"]) == "seed"
    assert old_launcher.shorthand("see", ["see"]) == "see"  # token exhausted: the collision stays


# --------------------------------------------------------------------------- (b) the guarantee


@pytest.mark.parametrize("case", CASES)
def test_compat_cases_import_equivalently(case: str, expected: dict[str, Any]) -> None:
    """The reference modules, imported here where neither launcher package is installed."""
    reference = expected[case]
    target = str(COMPAT / reference["module"])
    text = assert_equivalent(target, reference["experiment_suffix"])
    # and against the real launcher's output directly, not only through the oracle
    wants = [
        {"name": old["name"], "argv": old["cmd"].split(" "), "env": old["env_vars"] or {}}
        for old in reference["experiments"]
    ]
    assert_same_experiments(wants, _new(text))


def test_stand_in_serves_modules_when_the_launcher_is_not_installed(tmp_path: Path) -> None:
    if any(importlib.util.find_spec(name) is not None for name in ("sample_factory", "isaacgymenvs")):
        pytest.skip("a launcher package is installed here, so the stand-in is not what gets imported")
    for case in ("igym_pbt", "docs_tied"):  # one imports isaacgymenvs, one sample_factory
        rd = load_run_module(str(write_module(tmp_path, case, MODULES[case])))[1]
        assert type(rd) is launcher_compat.RunDescription
    assert "sample_factory" not in sys.modules
    assert "isaacgymenvs" not in sys.modules


def test_an_installed_launcher_wins_over_the_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "site" / "sample_factory" / "launcher"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "run_description.py").write_text(
        (Path(launcher_compat.__file__).read_text()).replace('"""Stand-ins', '"""REAL', 1)
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    module = write_module(tmp_path, "run_mod", COMPAT_FREE_MUJOCO)
    try:
        rd = load_run_module(str(module))[1]
        assert type(rd).__module__ == "sample_factory.launcher.run_description"
        assert sys.modules["sample_factory.launcher.run_description"].__doc__.startswith("REAL")
        assert_equivalent(str(module))
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "sample_factory"]:
            del sys.modules[name]


COMPAT_FREE_MUJOCO = """
    # Sample Factory docs, "Launcher": 10 seeds x 9 MuJoCo environments.
    from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription

    _params = ParamGrid(
        [
            ("seed", [0, 1111, 2222, 3333, 4444, 5555, 6666, 7777, 8888, 9999]),
            ("env", ["mujoco_ant", "mujoco_halfcheetah", "mujoco_hopper", "mujoco_humanoid",
                     "mujoco_doublependulum", "mujoco_pendulum", "mujoco_reacher", "mujoco_swimmer", "mujoco_walker"]),
        ]
    )

    _experiments = [
        Experiment(
            "mujoco_all_envs",
            "python -m sf_examples.mujoco.train_mujoco --algo=APPO --with_wandb=True --wandb_tags mujoco",
            _params.generate_params(randomize=False),
        ),
    ]

    RUN_DESCRIPTION = RunDescription("mujoco_all_envs", experiments=_experiments)
"""

MODULES: dict[str, str] = {
    "docs_tied": """
        # Sample Factory docs: tied parameters vary together inside a grid.
        from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription

        _params = ParamGrid([
            ("seed", [1111, 2222, 3333, 4444]),
            (("serial_mode", "async_rl"), ([True, False], [False, True])),
            (("use_rnn", "recurrence"), ([False, 1], [True, 16])),
        ])
        _experiments = [
            Experiment(
                "basic_envs_fs4",
                "python -m sf_examples.vizdoom.train_vizdoom --train_for_env_steps=500000000 --algo=APPO "
                "--env_frameskip=4 --num_workers=36 --num_envs_per_worker=8 --num_policies=1 --batch_size=2048",
                _params.generate_params(randomize=False),
            ),
        ]
        RUN_DESCRIPTION = RunDescription("doom_basic_envs", experiments=_experiments)
    """,
    "igym_pbt": """
        # IsaacGymEnvs decentralized PBT: 8 policies, Hydra-style overrides, plain names.
        from isaacgymenvs.pbt.launcher.run_description import Experiment, ParamGrid, RunDescription

        _name = "allegro_kuka_pbt"
        _num_policies = 8
        _params = ParamGrid([("pbt.policy_idx", list(range(_num_policies)))])
        _cmd = (
            f"python -m isaacgymenvs.train seed=-1 task=AllegroKukaLSTM task/env=reorientation "
            f"train.params.config.max_frames=10000000000 headless=True "
            f"pbt=pbt_default pbt.num_policies={_num_policies} pbt.workspace=workspace_{_name} "
            f"pbt.initial_delay=200000000 pbt.interval_steps=50000000 pbt/mutation=allegro_kuka_mutation"
        )
        RUN_DESCRIPTION = RunDescription(
            _name,
            experiments=[Experiment(_name, _cmd, _params.generate_params(randomize=False))],
            experiment_arg_name="experiment",
            experiment_dir_arg_name="hydra.run.dir",
            param_prefix="",
            customize_experiment_name=False,
        )
    """,
    "with_env_vars": """
        from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription

        _params = ParamGrid([("seed", [1, 2]), ("num_workers", [4, 8])])
        RUN_DESCRIPTION = RunDescription(
            "env_run",
            experiments=[
                Experiment(
                    "atari",
                    "python -m sf_examples.atari.train_atari --env=atari_breakout",
                    _params.generate_params(randomize=False),
                    env_vars={"OMP_NUM_THREADS": "1", "CUDA_LAUNCH_BLOCKING": "1", "WANDB_MODE": "offline"},
                ),
            ],
        )
    """,
    "several_experiments": """
        from sample_factory.launcher.run_description import Experiment, ParamGrid, ParamList, RunDescription

        _lr = ParamGrid([("learning_rate", [1e-4, 3e-4, 1e-05]), ("gamma", [0.99, 0.999])])
        _arch = ParamList([
            {"encoder_mlp_layers": "[256,256]", "rnn_size": 128},
            {"encoder_mlp_layers": "[512,512]", "rnn_size": 512},
        ])
        _experiments = [
            Experiment("lr", "python -m train --env=ant", _lr.generate_params(randomize=False)),
            Experiment("arch", "python -m train --env=humanoid", _arch.generate_params(randomize=False),
                       env_vars={"OMP_NUM_THREADS": "2"}),
            Experiment("baseline", "python -m train --env=ant --seed=0"),
            Experiment("other_script", "python3 other.py", ParamGrid([("x.y_z-w", [-1, 0])]).generate_params()),
        ]
        RUN_DESCRIPTION = RunDescription("multi", experiments=_experiments)
    """,
    "param_list": """
        from sample_factory.launcher.run_description import Experiment, ParamList, RunDescription

        _combos = ParamList([
            {"lr": 0.001, "batch_size": 64, "normalize": True},
            {"lr": 0.0003, "batch_size": 1024, "normalize": False},
            {"lr": 0.0001, "batch_size": 4096, "normalize": False},
        ])
        RUN_DESCRIPTION = RunDescription(
            "handpicked", experiments=[Experiment("picks", "python train.py", _combos.generate_params(randomize=False))]
        )
    """,
    "odd_values": """
        from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription

        _params = ParamGrid([
            ("max_grad_norm", [None, 0.5]),
            ("kernel", [(3,), "5"]),
            ("flag", [True, 1]),
            ("path", ["data/a.txt"]),
            ("big", [2**70]),
            ("layers", [[64, 64], []]),
            ("clip", [float("inf")]),
        ])
        RUN_DESCRIPTION = RunDescription(
            "odd", experiments=[Experiment("vals", "python train.py", _params.generate_params(randomize=False))]
        )
    """,
    "not_a_grid": """
        from sample_factory.launcher.run_description import Experiment, RunDescription

        # hand-made combinations: three corners of a 2 x 2 square, a duplicate, mismatched keys
        _corners = [{"lr": 0.001, "bs": 64}, {"lr": 0.001, "bs": 128}, {"lr": 0.0003, "bs": 64}]
        _dupes = [{"seed": 1}, {"seed": 1}, {"seed": 2}]
        _mixed = [{"a": 1, "b": 2}, {"b": 2, "a": 1}]
        _square = [{"x": 1, "y": "u"}, {"x": 1, "y": "v"}, {"x": 2, "y": "u"}, {"x": 2, "y": "v"}]
        RUN_DESCRIPTION = RunDescription("irregular", experiments=[
            Experiment("corners", "python train.py", _corners),
            Experiment("dupes", "python train.py", _dupes),
            Experiment("mixed", "python train.py", _mixed),
            Experiment("square", "python train.py", _square),
            Experiment("repeated", "python train.py", [{}, {}, {}]),
        ])
    """,
    "shuffled": """
        import random
        from sample_factory.launcher.run_description import Experiment, ParamGrid, ParamList, RunDescription

        random.seed(1234)  # the launcher shuffles at import time: pbtrun keeps the order it got
        _grid = ParamGrid([("a", [1, 2, 3]), ("b", ["x", "y"])])
        _list = ParamList([{"c": 1}, {"c": 2}, {"c": 3}, {"c": 4}])
        RUN_DESCRIPTION = RunDescription("shuffled", experiments=[
            Experiment("grid", "python t.py", _grid.generate_params(randomize=True)),
            Experiment("list", "python t.py", _list.generate_params()),
        ])
    """,
    "odd_commands": """
        from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription

        _p = ParamGrid([("seed", [1, 2])])
        RUN_DESCRIPTION = RunDescription("cmds", experiments=[
            Experiment("quoted", 'python train.py --msg="hello" --tag=\\'a\\'', _p.generate_params()),
            Experiment("spaces", "python  train.py --x=1 ", _p.generate_params()),
        ])
    """,
    "suffix_in_module": """
        from isaacgymenvs.pbt.launcher.run_description import Experiment, ParamGrid, RunDescription

        RUN_DESCRIPTION = RunDescription(
            "suffixed",
            experiments=[Experiment("g", "python t.py", ParamGrid([("k", [1, 2])]).generate_params())],
            experiment_arg_name="--name",
            experiment_dir_arg_name="--dir",
        )
        RUN_DESCRIPTION.experiment_suffix = "from_module"
    """,
}


# str([64, 64]) has a space: the old launcher split that value in two, pbtrun passes one argument,
# so these compare as command strings (see test_a_value_with_a_space_stays_one_argument)
VALUES_WITH_SPACES = {"odd_values"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_run_module_imports_equivalently(name: str, tmp_path: Path) -> None:
    assert_equivalent(str(write_module(tmp_path, name, MODULES[name])), joined=name in VALUES_WITH_SPACES)


def test_docs_mujoco_grid_by_dotted_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "my_runs_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_module(package, "mujoco_all_envs", COMPAT_FREE_MUJOCO)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        text = assert_equivalent("my_runs_pkg.mujoco_all_envs")
        assert len(_new(text)) == 90
        assert "Imported by `pbtrun import` from module my_runs_pkg.mujoco_all_envs" in text
        grid = tomllib.loads(text)["experiments"][0]["grid"]
        assert list(grid) == ["seed", "env"]
        assert len(grid["seed"]) == 10 and len(grid["env"]) == 9
    finally:
        for mod in [n for n in sys.modules if n.split(".")[0] == "my_runs_pkg"]:
            del sys.modules[mod]


def test_dotted_name_is_found_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``python -m`` would: a console-script ``pbtrun`` does not have the cwd on sys.path."""
    write_module(tmp_path, "cwd_run_module", MODULES["param_list"])
    monkeypatch.chdir(tmp_path)
    try:
        assert_equivalent("cwd_run_module")
    finally:
        sys.modules.pop("cwd_run_module", None)


def _pbtrun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``pbtrun ARGS`` as the console script runs it: ``-P`` keeps the current directory off
    ``sys.path``, where ``python -m`` would put it."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "pbtrun", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


@pytest.mark.parametrize("target", ["runs/dmlab/origin.py", "runs.dmlab.origin"])
def test_a_run_module_imports_its_own_package_from_the_working_directory(tmp_path: Path, target: str) -> None:
    """As the old launcher's ``python -m ...run --run=runs.dmlab.origin`` found it."""
    package = tmp_path / "runs" / "dmlab"
    package.mkdir(parents=True)
    write_module(package, "baseline", 'BASE = "python -m train --env=dmlab_30"\n')
    write_module(
        package,
        "origin",
        """
        from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription
        from runs.dmlab.baseline import BASE

        _grid = ParamGrid([("seed", [0, 1111])])
        RUN_DESCRIPTION = RunDescription("origin", experiments=[Experiment("v1", BASE, _grid.generate_params(False))])
        """,
    )
    done = _pbtrun(tmp_path, "import", target)
    assert done.returncode == 0, done.stderr
    doc = tomllib.loads(done.stdout)
    assert doc["command"] == "python -m train --env=dmlab_30"
    assert doc["experiments"][0]["grid"] == {"seed": [0, 1111]}


def test_what_a_run_module_prints_goes_to_stderr_not_into_the_spec(tmp_path: Path) -> None:
    source = textwrap.dedent(MODULES["param_list"]) + (
        "\nprint('loading runs: 2 groups')\nimport os, sys\nos.system('echo from a child process')\n"
        "os.write(1, b'straight to fd 1\\n')\nsys.stdout.write('unflushed')\n"
    )
    module = write_module(tmp_path, "printing", source)
    done = _pbtrun(tmp_path, "import", str(module))
    assert done.returncode == 0, done.stderr
    assert done.stdout == to_toml(str(module)), done.stdout
    for said in ("loading runs: 2 groups", "from a child process", "straight to fd 1", "unflushed"):
        assert said in done.stderr
    out = tmp_path / "out.toml"
    to_file = _pbtrun(tmp_path, "import", str(module), "-o", str(out))
    assert to_file.returncode == 0 and to_file.stdout == "", to_file.stdout
    assert out.read_text() == done.stdout


def _imported(tmp_path: Path, name: str, suffix: str | None = None) -> dict[str, Any]:
    return tomllib.loads(to_toml(str(write_module(tmp_path, name, MODULES[name])), suffix))


def test_tied_parameters_come_out_as_tied_keys(tmp_path: Path) -> None:
    text = to_toml(str(write_module(tmp_path, "docs_tied", MODULES["docs_tied"])))
    assert '"serial_mode,async_rl" = [[true, false], [false, true]]' in text
    grid = tomllib.loads(text)["experiments"][0]["grid"]
    assert grid == {
        "seed": [1111, 2222, 3333, 4444],
        "serial_mode,async_rl": [[True, False], [False, True]],
        "use_rnn,recurrence": [[False, 1], [True, 16]],
    }


def test_param_list_comes_out_as_list(tmp_path: Path) -> None:
    doc = _imported(tmp_path, "param_list")
    (group,) = doc["experiments"]
    assert "grid" not in group
    assert group["list"][0] == {"lr": 0.001, "batch_size": 64, "normalize": True}
    assert [list(c) for c in group["list"]] == [["lr", "batch_size", "normalize"]] * 3


def test_param_list_whose_rows_form_a_product_comes_out_as_grid(tmp_path: Path) -> None:
    source = """
        from sample_factory.launcher.run_description import Experiment, ParamList, RunDescription

        _rows = ParamList([{"lr": 1, "bs": 8}, {"lr": 1, "bs": 16}, {"lr": 2, "bs": 8}, {"lr": 2, "bs": 16}])
        RUN_DESCRIPTION = RunDescription("plist", experiments=[
            Experiment("g", "python t.py", _rows.generate_params(randomize=False)),
        ])
    """
    text = assert_equivalent(str(write_module(tmp_path, "plist_product", source)))  # the same experiments
    (group,) = tomllib.loads(text)["experiments"]
    assert group["grid"] == {"lr": [1, 2], "bs": [8, 16]} and "list" not in group


def test_empty_arg_names_pass_nothing_where_the_old_launcher_passed_a_stray_argument(tmp_path: Path) -> None:
    source = """
        from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription

        RUN_DESCRIPTION = RunDescription(
            "bare",
            experiments=[Experiment("g", "python t.py", ParamGrid([("lr", [1])]).generate_params(randomize=False))],
            experiment_arg_name="",
            experiment_dir_arg_name="",
        )
    """
    target = str(write_module(tmp_path, "bare_args", source))
    text = to_toml(target)
    assert '# Note: experiment_arg_name is "": the old launcher still passed "=<value>"; pbtrun passes nothing.' in text
    assert '# Note: experiment_dir_arg_name is ""' in text
    (old,) = _old(target)
    (new,) = _new(text)
    assert old["argv"] == ["python", "t.py", "--lr=1", "=00_g_lr_1", "=train_dir/bare/g_"]  # as the README says
    assert new["argv"] == ["python", "t.py", "--lr=1"]
    assert (old["name"], old["env"]) == (new["name"], new["env"])


def test_irregular_params_come_out_as_list_and_products_as_grid(tmp_path: Path) -> None:
    groups = {g["name"]: g for g in _imported(tmp_path, "not_a_grid")["experiments"]}
    assert groups["corners"]["list"] == [{"lr": 0.001, "bs": 64}, {"lr": 0.001, "bs": 128}, {"lr": 0.0003, "bs": 64}]
    assert groups["dupes"]["list"] == [{"seed": 1}, {"seed": 1}, {"seed": 2}]
    assert list(groups["mixed"]["list"][1]) == ["b", "a"]  # key order is argv order: kept
    assert groups["square"]["grid"] == {"x": [1, 2], "y": ["u", "v"]}  # a hand-written product is a grid
    assert groups["repeated"]["repeat"] == 3
    assert {"grid", "list", "repeat"}.isdisjoint(_imported(tmp_path, "several_experiments")["experiments"][2])


def test_values_toml_cannot_hold_become_their_rendering(tmp_path: Path) -> None:
    grid = _imported(tmp_path, "odd_values")["experiments"][0]["grid"]
    assert grid["max_grad_norm"] == ["None", 0.5]
    assert grid["kernel"] == ["(3,)", "5"]
    assert grid["flag"] == [True, 1]  # True and 1 are equal in Python but render differently
    assert grid["big"] == [str(2**70)]
    assert grid["layers"] == [[64, 64], []]
    assert grid["clip"] == ["inf"]


def test_a_value_with_a_space_stays_one_argument(tmp_path: Path) -> None:
    """The old launcher split ``--shape=(64, 64)`` in two (a quoting problem); pbtrun keeps it whole
    and otherwise gives the same command, name and order."""
    source = """
        from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription
        _params = ParamGrid([("clip", [None, 0.5]), ("shape", [(64, 64), (32,)])])
        RUN_DESCRIPTION = RunDescription("shapes", experiments=[
            Experiment("net", "python train.py", _params.generate_params(randomize=False)),
        ])
    """
    target = str(write_module(tmp_path, "shapes", source))
    text = assert_equivalent(target, joined=True)
    experiments = expand(parse(text, Path("x.toml")), TRAIN_DIR)
    assert experiments[0].name == "00_net_cli_None_sha_(64, 64)"
    assert "--shape=(64, 64)" in experiments[0].argv
    assert tomllib.loads(text)["experiments"][0]["grid"] == {"clip": ["None", 0.5], "shape": ["(64, 64)", "(32,)"]}


def test_numpy_scalars(tmp_path: Path) -> None:
    source = """
        import numpy as np
        from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription
        _params = ParamGrid([
            ("lr", list(np.array([1e-3, 3e-4]))),
            ("n", list(np.arange(2))),
            ("half", [np.float32(0.1)]),
            ("on", [np.bool_(True)]),
        ])
        RUN_DESCRIPTION = RunDescription("np", experiments=[
            Experiment("g", "python t.py", _params.generate_params(randomize=False)),
        ])
    """
    target = str(write_module(tmp_path, "np_run", source))
    text = assert_equivalent(target)
    grid = tomllib.loads(text)["experiments"][0]["grid"]
    # the launcher rendered with f-strings: f"{np.float32(0.1)}" is 0.10000000149011612 (str() gives 0.1)
    assert grid == {"lr": [0.001, 0.0003], "n": [0, 1], "half": [0.10000000149011612], "on": [True]}
    assert "--half=0.10000000149011612" in _new(text)[0]["argv"]


def test_odd_commands_keep_the_old_words(tmp_path: Path) -> None:
    groups = _imported(tmp_path, "odd_commands")["experiments"]
    assert groups[0]["command"] == ["python", "train.py", '--msg="hello"', "--tag='a'"]
    assert groups[1]["command"] == ["python", "", "train.py", "--x=1", ""]


def test_shared_command_goes_to_the_top(tmp_path: Path) -> None:
    doc = _imported(tmp_path, "not_a_grid")
    assert doc["command"] == "python train.py"
    assert all("command" not in g for g in doc["experiments"])
    several = _imported(tmp_path, "several_experiments")
    assert "command" not in several
    assert [g["command"] for g in several["experiments"]][:2] == [
        "python -m train --env=ant",
        "python -m train --env=humanoid",
    ]


def test_experiment_suffix_argument_overrides_the_module(tmp_path: Path) -> None:
    assert _imported(tmp_path, "suffix_in_module")["experiment_suffix"] == "from_module"
    assert _imported(tmp_path, "suffix_in_module", "cli")["experiment_suffix"] == "cli"
    target = str(tmp_path / "suffix_in_module.py")
    text = assert_equivalent(target, "cli")
    assert _new(text)[0]["argv"][-1] == "--dir=train_dir/suffixed/g_cli"


def test_top_level_settings_are_spelled_out(tmp_path: Path) -> None:
    doc = _imported(tmp_path, "igym_pbt")
    assert {k: v for k, v in doc.items() if k != "experiments"} == {
        "name": "allegro_kuka_pbt",
        "command": doc["command"],
        "param_prefix": "",
        "experiment_arg_name": "experiment",
        "experiment_dir_arg_name": "hydra.run.dir",
        "customize_experiment_name": False,
        "experiment_suffix": "",
    }
    assert doc["experiments"][0]["grid"] == {"pbt.policy_idx": list(range(8))}


# --------------------------------------------------------------------------- (c) errors


def _error(target: str, suffix: str | None = None) -> str:
    with pytest.raises(SpecError) as info:
        to_toml(target, suffix)
    message = str(info.value)
    assert "Traceback" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    message = _error(str(tmp_path / "nope.py"))
    assert "nope.py: no such file" in message and "dotted module name" in message


def test_missing_dotted_module() -> None:
    message = _error("no_such_pkg_for_pbtrun.runs")
    assert "no module named no_such_pkg_for_pbtrun can be imported here" in message
    assert "PYTHONPATH" in message


def test_not_a_module_name() -> None:
    assert "neither the path of a .py file nor a dotted module name" in _error("my runs")


def test_syntax_error(tmp_path: Path) -> None:
    target = write_module(tmp_path, "broken", "from sample_factory.launcher.run_description import (\nx = 1\n")
    message = _error(str(target))
    assert f"{target}, line" in message and "syntax error" in message


def test_no_run_description(tmp_path: Path) -> None:
    target = write_module(tmp_path, "empty_run", "RUN = 1\n")
    message = _error(str(target))
    assert f"{target} defines no RUN_DESCRIPTION" in message


def test_run_description_of_the_wrong_kind(tmp_path: Path) -> None:
    target = write_module(tmp_path, "wrong_kind", "RUN_DESCRIPTION = {'run_name': 'x'}\n")
    assert "RUN_DESCRIPTION is a dict, not a RunDescription" in _error(str(target))
    target = write_module(tmp_path, "an_int", "RUN_DESCRIPTION = 5\n")
    assert "RUN_DESCRIPTION is an int, not a RunDescription" in _error(str(target))


@pytest.mark.parametrize(
    ("declared", "said"),
    [
        (
            'Experiment("g", "python t.py", [{"x": "a\\0b"}])',
            "experiments[0].params: the value of 'x', 'a\\x00b', holds",
        ),
        ('Experiment("g", "python t.py", [{"x": ["ok", "\\0"]}])', "the value of 'x', ['ok', '\\x00'], holds"),
        ('Experiment("g", "python t.py", [{"x\\0": 1}])', "a parameter named 'x\\x00'"),
        ('Experiment("g", "python t.py", env_vars={"A": "\\0"})', "experiments[0].env_vars: 'A': '\\x00' holds"),
        ('Experiment("g", "python t.py\\0")', "experiments[0].cmd, 'python t.py\\x00', holds"),
    ],
    ids=["value", "value-in-a-list", "name", "env", "command"],
)
def test_a_nul_character_is_refused_where_it_is(tmp_path: Path, declared: str, said: str) -> None:
    source = f"""
        from sample_factory.launcher.run_description import Experiment, RunDescription
        RUN_DESCRIPTION = RunDescription("r", experiments=[{declared}])
    """
    message = _error(str(write_module(tmp_path, "with_nul", source)))
    assert said in message and "NUL character" in message, message


def test_a_nul_character_in_a_run_setting_is_refused(tmp_path: Path) -> None:
    source = """
        from sample_factory.launcher.run_description import Experiment, RunDescription
        RUN_DESCRIPTION = RunDescription("r", experiments=[Experiment("g", "python t.py")], param_prefix="-\\0")
    """
    message = _error(str(write_module(tmp_path, "nul_prefix", source)))
    assert "RUN_DESCRIPTION.param_prefix, '-\\x00', holds a NUL character" in message


@pytest.mark.parametrize(
    ("run_name", "group_name", "fragment"),
    [
        ("my run", "g", "the run name 'my run' cannot be a pbtrun name"),
        ("../escape", "g", "the run name '../escape' cannot be a pbtrun name"),
        ("ok", "a/b", "experiments[0]: the experiment name 'a/b' cannot be a pbtrun name"),
        ("r\n", "g", "the run name 'r\\n' cannot be a pbtrun name"),
        ("ok", "g\n", "experiments[0]: the experiment name 'g\\n' cannot be a pbtrun name"),
    ],
)
def test_invalid_names(tmp_path: Path, run_name: str, group_name: str, fragment: str) -> None:
    source = f"""
        from sample_factory.launcher.run_description import Experiment, RunDescription
        RUN_DESCRIPTION = RunDescription({run_name!r}, experiments=[Experiment({group_name!r}, "python t.py")])
    """
    message = _error(str(write_module(tmp_path, "bad_name", source)))
    assert fragment in message and "letters, digits" in message


def test_duplicate_group_names_and_bad_suffix(tmp_path: Path) -> None:
    source = """
        from sample_factory.launcher.run_description import Experiment, RunDescription
        _groups = [Experiment("g", "python a.py"), Experiment("g", "python b.py")]
        RUN_DESCRIPTION = RunDescription("r", experiments=_groups)
    """
    assert "are both named 'g'" in _error(str(write_module(tmp_path, "dupes", source)))
    target = write_module(tmp_path, "suffix_ok", MODULES["param_list"])
    assert "the experiment suffix '../x' cannot end a directory name" in _error(str(target), "../x")
    assert "the experiment suffix 'v\\n' cannot end a directory name" in _error(str(target), "v\n")


def test_missing_dependency_and_missing_stand_in_name(tmp_path: Path) -> None:
    needs = write_module(tmp_path, "needs_torch", "import not_installed_pkg_xyz\nRUN_DESCRIPTION = None\n")
    message = _error(str(needs))
    assert "imports not_installed_pkg_xyz, which is not installed here" in message
    if importlib.util.find_spec("sample_factory") is None:
        more = write_module(tmp_path, "needs_more", "from sample_factory.launcher.run_description import ParamSweep\n")
        assert "stand-in for sample_factory.launcher.run_description has" in _error(str(more))


def test_module_that_raises(tmp_path: Path) -> None:
    target = write_module(tmp_path, "raises", "x = 1\nraise RuntimeError('no GPU here')\n")
    message = _error(str(target))
    assert f"{target}, line 2: the run module raised RuntimeError: no GPU here" in message


def test_bad_parameter_name(tmp_path: Path) -> None:
    source = """
        from sample_factory.launcher.run_description import Experiment, RunDescription
        RUN_DESCRIPTION = RunDescription("r", experiments=[Experiment("g", "python t.py", [{"a b": 1}])])
    """
    assert "parameter named 'a b'" in _error(str(write_module(tmp_path, "bad_param", source)))


# --------------------------------------------------------------------------- the stand-in classes


def _without_launchers() -> None:
    if any(importlib.util.find_spec(name) is not None for name in ("sample_factory", "isaacgymenvs")):
        pytest.skip("a launcher package is installed here, so the stand-in is not what gets imported")


def test_stand_ins_for_the_launchers_seeds_helpers(tmp_path: Path) -> None:
    _without_launchers()
    source = """
        from isaacgymenvs.pbt.experiments.run_utils import default_num_frames, seeds as igym_seeds
        from sample_factory.launcher.launcher_utils import seeds
        from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription

        _grid = ParamGrid([("seed", seeds(4)), ("other_seed", igym_seeds(2))])
        _cmd = f"python t.py --frames={default_num_frames}"
        RUN_DESCRIPTION = RunDescription("r", experiments=[Experiment("g", _cmd, _grid.generate_params(False))])
    """
    doc = tomllib.loads(to_toml(str(write_module(tmp_path, "with_seeds", source))))
    assert doc["command"] == "python t.py --frames=10000000000"
    grid = doc["experiments"][0]["grid"]
    assert [len(grid["seed"]), len(grid["other_seed"])] == [4, 2]
    assert all(isinstance(s, int) and 1_000_000 <= s < 9_999_999 for s in grid["seed"] + grid["other_seed"])


def test_the_stand_in_has_no_isaacgymenvs_version_and_says_why(tmp_path: Path) -> None:
    _without_launchers()
    source = "from isaacgymenvs.pbt.experiments.run_utils import version\n"
    message = _error(str(write_module(tmp_path, "with_version", source)))
    assert "cannot import name 'version'" in message
    assert "stand-in for isaacgymenvs.pbt.experiments.run_utils has seeds, default_num_frames only" in message
    assert "not version: that is yours to set in your copy of IsaacGymEnvs" in message


def test_stand_in_grid_order_and_tied_names() -> None:
    grid = ParamGrid([("a", [1, 2]), (("b", "c"), [(True, 1), (False, 2)]), ("d", ["x"])])
    assert list(grid.generate_params()) == [
        {"a": 1, "b": True, "c": 1, "d": "x"},
        {"a": 1, "b": False, "c": 2, "d": "x"},
        {"a": 2, "b": True, "c": 1, "d": "x"},
        {"a": 2, "b": False, "c": 2, "d": "x"},
    ]
    shuffled = list(grid.generate_params(randomize=True))
    assert sorted(map(repr, shuffled)) == sorted(map(repr, grid.generate_params()))
    assert list(ParamGrid([]).generate_params()) == []


def test_stand_in_list_experiment_and_run_description() -> None:
    combos = [{"x": k} for k in range(20)]
    assert list(ParamList(combos).generate_params(randomize=False)) == combos
    assert sorted(c["x"] for c in ParamList(combos).generate_params()) == list(range(20))
    experiment = Experiment("e", "python t.py", iter(combos))
    assert (experiment.base_name, experiment.cmd, experiment.params, experiment.env_vars) == (
        "e",
        "python t.py",
        combos,
        None,
    )
    assert Experiment("e", "c").params == []
    rd = RunDescription("r", [experiment])
    assert (rd.run_name, rd.experiment_suffix, rd.experiment_arg_name, rd.experiment_dir_arg_name) == (
        "r",
        "",
        "--experiment",
        "--train_dir",
    )
    assert (rd.customize_experiment_name, rd.param_prefix) == (True, "--")


# --------------------------------------------------------------------------- the command


def test_cli_import(tmp_path: Path, expected: dict[str, Any]) -> None:
    out = tmp_path / "sweep.toml"
    case = str(COMPAT / "cases" / "several_groups.py")
    args = [sys.executable, "-m", "pbtrun", "import", case, "-o", str(out), "--experiment-suffix", "v2"]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == to_toml(case, "v2")
    bad = subprocess.run(
        [sys.executable, "-m", "pbtrun", "import", str(tmp_path / "missing.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "missing.py: no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_import_to_a_missing_directory_says_so(tmp_path: Path) -> None:
    module = write_module(tmp_path, "param_list", MODULES["param_list"])
    args = [sys.executable, "-m", "pbtrun", "import", str(module), "-o", "nodir/sweep.toml"]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (
        "pbtrun: error: nodir/sweep.toml: cannot write it: the directory nodir does not exist. "
        "Create it first (mkdir -p nodir), or give another path.\n"
    )
    assert [p.name for p in tmp_path.iterdir() if p.name != "__pycache__"] == ["param_list.py"]
