"""Argument styles (``args``), placeholders, the mixed-style warning and duplicate grid values.

The compile tests load a spec from ``tmp_path`` and expand it (pure); the rest run the real
``pbtrun`` CLI (``plan``, ``up``, ``import``) in a scratch project. The end-to-end run of a real
Hydra app is in ``test_hydra.py``.
"""

from __future__ import annotations

import json
import textwrap
import tomllib
from pathlib import Path

import jsonschema
import pytest

from pbtrun.spec import argstyle
from pbtrun.spec.expansion import expand
from pbtrun.spec.model import ExperimentSpec, Spec
from pbtrun.spec.naming import canonical_json, id_from_json
from pbtrun.spec.reading import load
from pbtrun.state import merge as merging
from pbtrun.state import records as state

WARNING = "pbtrun: warning:"


def compile_text(tmp_path: Path, text: str, train_dir: str | None = None) -> list[ExperimentSpec]:
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(text))
    return expand(load(path), train_dir)


def spec_text(group: str = "grid = { lr = [0.1, 0.01] }", command: str = '"prog"', **top: str) -> str:
    head = "".join(f"{key} = {value}\n" for key, value in top.items())
    return f'name = "s"\ncommand = {command}\n{head}\n[[experiments]]\nname = "g"\n{textwrap.dedent(group)}\n'


# --------------------------------------------------------------------------- args = "argparse" | "hydra"


def test_argparse_is_the_default_and_unchanged(tmp_path: Path) -> None:
    default = compile_text(tmp_path, spec_text())
    explicit = compile_text(tmp_path, spec_text(args='"argparse"'))
    assert [(e.argv, e.env, e.id, e.name_arg) for e in explicit] == [(e.argv, e.env, e.id, e.name_arg) for e in default]
    assert default[1].argv == ("prog", "--lr=0.01", "--experiment=01_g_lr_0.01", "--train_dir=train_dir/s/g_")
    assert default[1].name_arg == 2


def test_hydra_style_passes_overrides_and_a_directory_per_experiment(tmp_path: Path) -> None:
    exps = compile_text(tmp_path, spec_text('grid = { lr = [0.1, 0.01], "model.depth" = [2] }', args='"hydra"'))
    assert [e.argv for e in exps] == [
        (
            "prog",
            "lr=0.1",
            "model.depth=2",
            "hydra.job.name=00_g_lr_0.1_m.dep_2",
            "hydra.run.dir=train_dir/s/00_g_lr_0.1_m.dep_2",
        ),
        (
            "prog",
            "lr=0.01",
            "model.depth=2",
            "hydra.job.name=01_g_lr_0.01_m.dep_2",
            "hydra.run.dir=train_dir/s/01_g_lr_0.01_m.dep_2",
        ),
    ]
    assert [e.name_arg for e in exps] == [3, 3]
    # The train dir flag moves every directory, as in the argparse style.
    moved = compile_text(tmp_path, spec_text(args='"hydra"'), train_dir="/runs")
    assert moved[0].argv[-1] == "hydra.run.dir=/runs/s/00_g_lr_0.1"


def test_keys_set_explicitly_win_over_the_hydra_defaults(tmp_path: Path) -> None:
    text = spec_text(args='"hydra"', param_prefix='"+"', experiment_arg_name='"run.name"', experiment_dir_arg_name='""')
    (first, _) = compile_text(tmp_path, text)
    assert first.argv == ("prog", "+lr=0.1", "run.name=00_g_lr_0.1")
    assert first.name_arg == 2


def test_hydra_values_are_quoted_where_hydra_s_grammar_needs_it(tmp_path: Path) -> None:
    (exp,) = compile_text(tmp_path, spec_text("grid = { net = [[64, 64]] }", args='"hydra"'))
    assert exp.name == "00_g_net_[64, 64]"
    assert exp.argv[1:] == (
        "net=[64, 64]",
        "hydra.job.name='00_g_net_[64, 64]'",
        "hydra.run.dir='train_dir/s/00_g_net_[64, 64]'",
    )


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("00_g_lr_0.001", "00_g_lr_0.001"),
        ("train_dir/s/00_g_x_1e-05", "train_dir/s/00_g_x_1e-05"),
        ("a b", "'a b'"),
        ("x=1,2", "'x=1,2'"),
        ("it's", "'it\\'s'"),
        ("back\\slash", "'back\\slash'"),  # a backslash before no quote is literal in Hydra
        ("ends\\", "'ends\\\\'"),  # before the closing quote it would escape it: doubled
        ("q\\'", "'q\\\\\\''"),
        ("", "''"),
    ],
)
def test_hydra_quote(value: str, quoted: str) -> None:
    assert argstyle.hydra_quote(value) == quoted


def test_an_option_is_never_quoted_even_in_hydra_style(tmp_path: Path) -> None:
    text = spec_text("grid = { net = [[64, 64]] }", args='"hydra"', experiment_arg_name='"--name"')
    (exp,) = compile_text(tmp_path, text)
    assert exp.argv[2] == "--name=00_g_net_[64, 64]"


def test_an_unknown_style_is_refused(project) -> None:
    project.spec(spec_text(args='"hydar"'))
    result = project.run("plan", "sweep.toml")
    assert result.returncode == 2
    assert result.stderr.startswith('pbtrun: error: sweep.toml, line 3: args: "hydar" is not an argument style')
    assert '"argparse" or "hydra"' in result.stderr


def test_the_schema_knows_args(project) -> None:
    schema = json.loads(project.run("schema").stdout)
    jsonschema.validate(tomllib.loads(spec_text(args='"hydra"')), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(tomllib.loads(spec_text(args='"hydar"')), schema)


# --------------------------------------------------------------------------- placeholders


def test_placeholders_are_filled_in_the_command_params_and_env(tmp_path: Path) -> None:
    text = spec_text(
        """\
        grid = { lr = [0.1], out = ["{experiment_dir}/ckpt"] }
        env = { RUN = "{experiment}", LOG = "{sweep_dir}/{experiment}.{attempt}" }
        """,
        command='["prog", "--name={experiment}", "--sweep={sweep_dir}", "--try={attempt}"]',
        customize_experiment_name="false",  # else a value that names the experiment cannot hold one
    )
    (exp,) = compile_text(tmp_path, text)
    name = "00_g"
    assert exp.name == name
    assert exp.argv == (
        "prog",
        f"--name={name}",
        "--sweep=train_dir/s",
        "--try={attempt}",  # known only at launch: fill_attempt
        "--lr=0.1",
        "--out=train_dir/s/g_/ckpt",  # argparse style: the group's directory
        f"--experiment={name}",
        "--train_dir=train_dir/s/g_",
    )
    assert exp.env == {"RUN": name, "LOG": f"train_dir/s/{name}.{{attempt}}"}
    assert exp.params == {"lr": 0.1, "out": "{experiment_dir}/ckpt"}  # as written: the id hashes these


def test_experiment_dir_is_the_own_directory_in_hydra_style_even_when_not_passed(tmp_path: Path) -> None:
    text = spec_text(command='"prog +out={experiment_dir}"', args='"hydra"', experiment_dir_arg_name='""')
    exps = compile_text(tmp_path, text)
    assert [e.argv for e in exps] == [
        ("prog", "+out=train_dir/s/00_g_lr_0.1", "lr=0.1", "hydra.job.name=00_g_lr_0.1"),
        ("prog", "+out=train_dir/s/01_g_lr_0.01", "lr=0.01", "hydra.job.name=01_g_lr_0.01"),
    ]


@pytest.mark.parametrize(
    "word",
    [
        '--net={"depth": 4, "act": {"fn": "relu"}}',  # JSON
        "--fmt={step}-{lr}",  # the app's own format string
        "model.name=${experiment}",  # OmegaConf interpolation, Hydra's own
        "--x={ experiment }",
        "--y={{experiment}}",
    ],
)
def test_other_braces_are_passed_as_written(tmp_path: Path, word: str) -> None:
    (exp, _) = compile_text(tmp_path, spec_text(command=json.dumps(["prog", word])))
    expected = word.replace("{{experiment}}", "{00_g_lr_0.1}")  # the inner token is a placeholder
    assert exp.argv[1] == expected


def _id(group: str, params: dict) -> str:
    return id_from_json(canonical_json(group), canonical_json(params), 0)


def test_placeholders_leave_ids_as_they_were(tmp_path: Path) -> None:
    """Ids hash the group and the parameters as written: a placeholder in a value, or in the
    command, changes no id (and existing sweeps keep theirs)."""
    plain = compile_text(tmp_path, spec_text())
    with_command = compile_text(tmp_path, spec_text(command='"prog --out={experiment_dir}"', args='"hydra"'))
    assert [e.id for e in with_command] == [e.id for e in plain]
    assert plain[0].id == _id("g", {"lr": 0.1}) == "5a9fcd65d9406b71"  # as before placeholders existed
    (exp,) = compile_text(tmp_path, spec_text('grid = { out = ["{sweep_dir}/x"] }', customize_experiment_name="false"))
    assert exp.id == _id("g", {"out": "{sweep_dir}/x"})


@pytest.mark.parametrize("value", ["a{attempt}", "{experiment}-b", "{experiment_dir}/ckpt"])
def test_a_placeholder_in_a_value_that_names_the_experiment_is_refused(project, value: str) -> None:
    """The name would hold the token, and filling it in would change the name's own arguments
    (hydra.run.dir of attempt 2 another directory than attempt 1's)."""
    project.spec(spec_text(f'grid = {{ lr = [0.1, 0.2], tag = ["{value}"] }}', args='"hydra"'))
    result = project.run("plan", "sweep.toml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "sweep.toml, line 7: experiments[1].grid.tag[1]" in result.stderr
    assert "customize_experiment_name" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ('command = "prog --out={experimnt}"', "command"),
        ('command = ["prog", "--out={experimnt}"]', "command[2]"),
        ('env = { RUN = "{experimnt}" }', "env.RUN"),
    ],
)
def test_a_mistyped_placeholder_is_refused_at_its_line(project, line: str, where: str) -> None:
    command = 'train_dir = "td"\n' if line.startswith("command") else 'command = "prog"\n'
    project.spec(f'name = "s"\n{command}{line}\n[[experiments]]\nname = "g"\n')
    result = project.run("plan", "sweep.toml")
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.startswith(f"pbtrun: error: sweep.toml, line 3: {where}: {{experimnt}}"), result.stderr
    assert "Did you mean {experiment}?" in result.stderr and "Traceback" not in result.stderr


def test_a_mistyped_placeholder_in_a_grid_value_is_refused_at_its_element(project) -> None:
    project.spec(spec_text('[experiments.grid]\nout = [\n  "a",\n  "{sweepdir}/b",\n]'))
    result = project.run("up", "sweep.toml")
    assert result.returncode == 2, result.stderr
    assert "sweep.toml, line 9: experiments[1].grid.out[2]: {sweepdir}" in result.stderr
    assert "Did you mean {sweep_dir}?" in result.stderr
    assert not (project.root / "train_dir").exists()


# --------------------------------------------------------------------------- renaming on merge


def test_a_renamed_new_experiment_gets_its_directory_and_placeholders_renamed(tmp_path: Path) -> None:
    """Merge numbers a new experiment whose name is taken past the group's last; in Hydra style
    its directory, and wherever {experiment} was written, carry the new name too."""
    group = 'grid = {{ lr = {} }}\nenv = {{ RUN = "{{experiment}}" }}'
    top = {"args": '"hydra"', "customize_experiment_name": "false", "command": '"prog +out={experiment}"'}
    first = compile_text(tmp_path, spec_text(group.format("[0.1]"), **top))
    sweep = state.Sweep("s", "/", "train_dir", 0.0, state.Settings())
    sweep.replace_all(merging.new_experiment(c) for c in first)
    grown = compile_text(tmp_path, spec_text(group.format("[0.01, 0.1]"), **top))
    report = merging.merge(sweep, grown)
    assert report.added == ("01_g",) and report.changed == ()
    new = sweep.experiments[grown[0].id]
    assert new.name == "01_g" and new.spec.index == 1
    assert new.spec.argv == ("prog", "+out=01_g", "lr=0.01", "hydra.job.name=01_g", "hydra.run.dir=train_dir/s/01_g")
    assert new.spec.env == {"RUN": "01_g"}
    kept = sweep.experiments[grown[1].id]
    assert kept.name == "00_g" and kept.spec.argv == first[0].argv  # unchanged, not taken for changed
    # Compiled again, nothing differs: each is compared under the name it has.
    assert merging.merge(sweep, grown) == merging.MergeReport()


def test_a_grown_hydra_sweep_runs_each_experiment_in_a_directory_named_after_it(project) -> None:
    text = spec_text("grid = {{ lr = {} }}", command='"true"', args='"hydra"', customize_experiment_name="false")
    project.spec(text.format("[0.1, 0.03]"))
    assert project.run("up", "sweep.toml", "--num-gpus", "0").returncode == 0
    project.spec(text.format("[0.1, 0.01, 0.03]"))
    result = project.run("up", "sweep.toml", "--num-gpus", "0")
    assert result.returncode == 0, result.stderr
    experiments = project.status_json("s")["experiments"]
    assert {e["status"] for e in experiments} == {"succeeded"}
    assert len({e["name"] for e in experiments}) == 3
    for exp in experiments:
        name = exp["name"]
        assert exp["argv"][-2:] == [f"hydra.job.name={name}", f"hydra.run.dir=train_dir/s/{name}"]


# --------------------------------------------------------------------------- duplicate grid values


@pytest.mark.parametrize(
    ("grid", "line", "where", "value"),
    [
        ("lr = [0.1, 0.01, 0.1]", 7, "grid.lr[3]", "0.1"),
        ("lr = [\n  0.1,\n  0.01,\n  1e-1,\n]", 10, "grid.lr[3]", "0.1"),  # the same value, written otherwise
        ('"a,b" = [[1, 2], [1, 3], [1, 2]]', 7, "grid.a,b[3]", "[1, 2]"),
        ('opt = ["adam", "sgd", "sgd"]', 7, "grid.opt[3]", '"sgd"'),
        ("net = [[64, 64], [64, 64]]", 7, "grid.net[2]", "[64, 64]"),
    ],
)
def test_a_duplicate_grid_value_is_refused_at_its_line(project, grid: str, line: int, where: str, value: str) -> None:
    project.spec(spec_text(f"[experiments.grid]\n{grid}"))
    result = project.run("up", "sweep.toml")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        f"pbtrun: error: sweep.toml, line {line}: experiments[1].{where}: {value} is already element"
    )
    assert "repeat = N" in result.stderr and "Traceback" not in result.stderr
    assert not (project.root / "train_dir").exists()


def test_values_of_different_types_are_not_duplicates(tmp_path: Path) -> None:
    exps = compile_text(tmp_path, spec_text('grid = { x = [1, 1.0, true, "1", -0.0, 0.0] }'))
    assert [e.argv[1] for e in exps] == ["--x=1", "--x=1.0", "--x=True", "--x=1", "--x=-0.0", "--x=0.0"]
    assert len({e.id for e in exps}) == 6


def test_duplicates_in_a_list_of_combinations_stay_allowed(tmp_path: Path) -> None:
    """A list names each combination: twice is a repeat, as the old launcher's ParamList allowed."""
    exps = compile_text(tmp_path, spec_text("list = [{ lr = 0.1 }, { lr = 0.1 }]"))
    assert [e.name for e in exps] == ["00_g_lr_0.1", "01_g_lr_0.1"] and exps[0].id != exps[1].id


def test_an_old_launcher_grid_with_duplicates_imports_as_a_list(project) -> None:
    """The old launcher ran a ParamGrid's duplicates twice; the importer writes only grids whose
    axes are distinct values, so such a module comes out as a list and still plans."""
    (project.root / "dup_runs.py").write_text(
        textwrap.dedent(
            """\
            from sample_factory.launcher.run_description import Experiment, ParamGrid, RunDescription

            _grid = ParamGrid([("seed", [1, 2]), ("lr", [0.1, 0.01, 0.1])])
            _group = Experiment("g", "python t.py", _grid.generate_params())
            RUN_DESCRIPTION = RunDescription("dup", experiments=[_group])
            """
        )
    )
    result = project.run("import", "dup_runs.py", "-o", "sweep.toml")
    assert result.returncode == 0, result.stderr
    (group,) = tomllib.loads((project.root / "sweep.toml").read_text())["experiments"]
    assert "grid" not in group and len(group["list"]) == 6
    plan = project.run("plan", "sweep.toml", "--json")
    assert plan.returncode == 0, plan.stderr
    names = [e["name"] for e in json.loads(plan.stdout)["experiments"]]
    assert names == [
        f"0{k}_g_see_{s}_lr_{lr}" for k, (s, lr) in enumerate((s, lr) for s in (1, 2) for lr in (0.1, 0.01, 0.1))
    ]


# --------------------------------------------------------------------------- the mixed-style warning


MIXED = [
    pytest.param(
        {"param_prefix": '""'}, ["param_prefix", "line 3", "experiment_arg_name", "--experiment"], id="hydra-params"
    ),
    pytest.param(
        {"experiment_dir_arg_name": '"hydra.run.dir"'}, ["experiment_dir_arg_name", "param_prefix"], id="reverse"
    ),
    pytest.param(
        {"args": '"hydra"', "experiment_arg_name": '"--name"'}, ["experiment_arg_name", "--name"], id="hydra-option"
    ),
]


@pytest.mark.parametrize(("top", "said"), MIXED)
@pytest.mark.parametrize("command", [("plan",), ("up", "--dry-run")])
def test_mixed_styles_are_warned_about_in_plan(project, top: dict, said: list[str], command: tuple) -> None:
    project.spec(spec_text(**top))
    result = project.run(*command, "sweep.toml")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"{WARNING} sweep.toml: the argument styles mix:"), result.stderr
    assert result.stderr.count("\n") == 1, "one paragraph"
    assert 'args = "hydra"' in result.stderr
    for word in said:
        assert word in result.stderr
    assert "00_g_lr_0.1" in result.stdout  # the plan itself is unchanged


def test_up_warns_and_runs_with_the_exit_code_of_the_run(project) -> None:
    project.spec(spec_text(command='"true"', param_prefix='""'))
    result = project.run("up", "sweep.toml", "--num-gpus", "0")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(WARNING) == 1, result.stderr
    project.spec(spec_text(command='"false"', param_prefix='""').replace('name = "s"', 'name = "t"'))
    failed = project.run("up", "sweep.toml", "--num-gpus", "0")
    assert failed.returncode == 1 and failed.stderr.count(WARNING) == 1, failed.stderr


@pytest.mark.parametrize(
    "top",
    [
        {},
        {"args": '"hydra"'},
        {"param_prefix": '""', "experiment_arg_name": '"experiment"', "experiment_dir_arg_name": '"hydra.run.dir"'},
        {"param_prefix": '""', "experiment_arg_name": '""', "experiment_dir_arg_name": '""'},
        {"args": '"hydra"', "param_prefix": '"+"'},
    ],
)
def test_consistent_styles_get_no_warning(project, top: dict) -> None:
    project.spec(spec_text(**top))
    result = project.run("plan", "sweep.toml")
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_attempt_is_filled_at_each_launch(project, recorder):
    """``{attempt}`` in argv and env: each attempt sees its own number; the state keeps the token."""
    project.spec(
        f"""
        name = "at"
        command = "{recorder} --try={{attempt}}"
        experiment_arg_name = ""
        experiment_dir_arg_name = ""
        max_retries = 1
        env = {{ TRY = "{{attempt}}" }}
        [[experiments]]
        name = "a"
        list = [{{ fail_first = 3 }}]
        """
    )
    result = project.run("up", "sweep.toml", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    starts = [r for r in project.records() if r["event"] == "start"]
    assert [("--try=1" in r["argv"], "--try=2" in r["argv"]) for r in starts] == [(True, False), (False, True)]
    (exp,) = project.status_json("at")["experiments"]
    assert "--try={attempt}" in exp["argv"] and exp["env"]["TRY"] == "{attempt}"
    assert "--try=2" in Path(exp["log"]).read_text().splitlines()[5]  # the header's argv: as it ran


def test_a_spec_s_default_style_is_argparse():
    """spec/model.py spells the default out instead of importing argstyle (the state's readers
    load the model): it must stay the style's own name."""
    assert Spec._field_defaults["args"] == argstyle.ARGPARSE
