"""pbtrun compiles the same experiments as the Sample Factory / IsaacGymEnvs launcher it replaces.

``../shared/compat/expected.json`` holds what the old launcher's
``RunDescription.generate_experiments("train_dir")`` yielded for each run module in
``../shared/compat/cases``; ``tests/data/compat/<case>.toml`` is the equivalent pbtrun spec. Pure:
no processes, nothing written.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import CASES, COMPAT, TRAIN_DIR

from pbtrun.spec.expansion import expand
from pbtrun.spec.model import ExperimentSpec, Spec
from pbtrun.spec.reading import load

SPECS = Path(__file__).parent / "data" / "compat"


def _dir_arg(spec: Spec, argv: tuple[str, ...] | list[str]) -> str | None:
    """The value of the experiment-directory argument (``--train_dir=...``), if passed."""
    prefix = f"{spec.experiment_dir_arg_name}="
    values = [a[len(prefix) :] for a in argv if a.startswith(prefix)]
    assert len(values) <= 1, f"{prefix} passed {len(values)} times: {argv}"
    return values[0] if values else None


def _want(spec: Spec, old: dict[str, Any]) -> dict[str, Any]:
    argv = old["cmd"].split(" ")
    return {
        "name": old["name"],
        "argv": argv,
        "env": old["env_vars"] or {},
        "dir": _dir_arg(spec, argv),
        "dir from root_dir": os.path.join(TRAIN_DIR, old["root_dir"]),
    }


def _got(spec: Spec, exp: ExperimentSpec) -> dict[str, Any]:
    return {
        "name": exp.name,
        "argv": list(exp.argv),
        "env": exp.env,
        "dir": _dir_arg(spec, exp.argv),
        "dir from root_dir": _dir_arg(spec, exp.argv),
    }


def _side_by_side(index: int, want: dict[str, Any] | None, got: dict[str, Any] | None) -> str:
    """The first differing experiment, field by field and argv word by word: expected | got."""
    lines = [f"experiment #{index} differs (expected | got):"]
    if want is None or got is None:
        lines.append(f"  expected: {want!r}")
        lines.append(f"  got:      {got!r}")
        return "\n".join(lines)
    for key in ("name", "env", "dir", "dir from root_dir"):
        mark = "  " if want[key] == got[key] else "!!"
        lines.append(f"{mark} {key:<18} {want[key]!r:<60} | {got[key]!r}")
    lines.append("   argv:")
    for k, (w, g) in enumerate(itertools.zip_longest(want["argv"], got["argv"], fillvalue="<none>")):
        mark = "  " if w == g else "!!"
        lines.append(f"{mark} [{k:2}] {w!r:<70} | {g!r}")
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES)
def test_same_experiments_as_old_launcher(case: str, expected: dict[str, Any]) -> None:
    reference = expected[case]
    spec = load(SPECS / f"{case}.toml")
    assert spec.experiment_suffix == reference["experiment_suffix"]
    assert reference["train_dir"] == TRAIN_DIR
    compiled = expand(spec, TRAIN_DIR)

    wants = [_want(spec, old) for old in reference["experiments"]]
    gots = [_got(spec, exp) for exp in compiled]
    for index, (want, got) in enumerate(itertools.zip_longest(wants, gots)):
        assert want == got, _side_by_side(index, want, got)
    assert len(compiled) == len(reference["experiments"])


@pytest.mark.parametrize("case", CASES)
def test_spec_has_a_case_module(case: str, expected: dict[str, Any]) -> None:
    """Every reference case has its TOML here, and every TOML here a reference case."""
    assert (COMPAT / "cases" / f"{case}.py").is_file()
    assert sorted(expected) == sorted(CASES)
    assert sorted(p.stem for p in SPECS.glob("*.toml")) == sorted(CASES)
