"""The placeholders module: filling in one pass, near misses, and fill_attempt for the launch.

Pure: no spec, no process. How the spec layer uses them is in ``test_args.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pbtrun.spec.placeholders
from pbtrun.spec.placeholders import fill, fill_attempt, problem


def test_fill_attempt() -> None:
    argv = ("prog", "--try={attempt}", "--keep=${attempt}", '--json={"attempt": 1}')
    env = {"A": "{attempt}/{experiment}", "B": "plain"}
    new_argv, new_env = fill_attempt(argv, env, 2)
    assert new_argv == ("prog", "--try=2", "--keep=${attempt}", '--json={"attempt": 1}')
    assert new_env == {"A": "2/{experiment}", "B": "plain"}
    assert argv[1] == "--try={attempt}" and env["A"] == "{attempt}/{experiment}"  # inputs untouched


def test_fill_attempt_returns_its_inputs_when_there_is_nothing_to_fill() -> None:
    argv, env = ("prog", "--lr=0.1"), {"A": "b"}
    assert fill_attempt(argv, env, 3) == (argv, env)
    assert fill_attempt(argv, env, 3)[0] is argv and fill_attempt(argv, env, 3)[1] is env
    new_argv, new_env = fill_attempt(argv, {"A": "{attempt}"}, 3)
    assert new_argv is argv and new_env == {"A": "3"}


def test_fill_is_one_pass() -> None:
    """A value filled in is never read again for tokens."""
    assert fill("{experiment}/{sweep_dir}", {"experiment": "{sweep_dir}", "sweep_dir": "s"}) == "{sweep_dir}/s"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{experimnt}", "{experiment}"),
        ("{Experiment}", "{experiment}"),
        ("{experiment_name}", "{experiment}"),
        ("{sweepdir}", "{sweep_dir}"),
        ("{attempts}", "{attempt}"),
        ("{experiment_dirs}", "{experiment_dir}"),
    ],
)
def test_a_near_miss_is_a_problem(text: str, said: str) -> None:
    found = problem(f"--x={text}")
    assert found is not None and f"Did you mean {said}?" in found and text in found


@pytest.mark.parametrize("text", ["{lr}", "{step}", "{sweep}", "{x}", '{"experimnt": 1}', "${experimnt}", "{}"])
def test_anything_else_is_no_problem(text: str) -> None:
    assert problem(text) is None


def test_placeholders_module_is_light_for_the_scheduler() -> None:
    """The scheduler calls fill_attempt at every launch: its module must not bring the spec
    layer (TOML parsing) or anything that does I/O with it."""
    tree = ast.parse(Path(pbtrun.spec.placeholders.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "re", "collections.abc", "difflib"}, imported
