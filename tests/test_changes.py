"""Changing a sweep that exists: the refusal that asks for ``--force``, and the names and places
of experiments when a grid grows. Real sweeps run
through the real CLI (see ``conftest.py``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Project

TIMEOUT = 30


def spec_text(command: str, groups: str, max_parallel: int = 4) -> str:
    return (
        f'name = "ch"\ncommand = {json.dumps(command)}\nexperiment_dir_arg_name = ""\n'
        f"[scheduler]\nmax_parallel = {max_parallel}\n\n{groups}"
    )


def mlp(values: str) -> str:
    return f'[[experiments]]\nname = "mlp"\ngrid = {{ lr = [{values}] }}\n\n'


def sweep_files(project: Project) -> dict[str, bytes]:
    """Every file of the sweep directory, with its bytes."""
    root = project.root / "train_dir/ch"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def names(status: dict) -> list[str]:
    return [e["name"] for e in status["experiments"]]


def test_the_refusal_shows_the_difference_of_the_first_three_changed_experiments(
    project: Project, recorder: str
) -> None:
    seeds = '[[experiments]]\nname = "s"\ngrid = { seed = [1, 2, 3, 4, 5] }\n'
    project.spec(spec_text(recorder, seeds))
    assert project.run("up", "sweep.toml", "--plain", timeout=TIMEOUT).returncode == 0
    project.spec(spec_text(recorder + " --layers 3", seeds))
    before = sweep_files(project)
    refused = project.run("up", "sweep.toml", "--plain", timeout=TIMEOUT)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    err = refused.stderr
    assert "changes the command or env of 5 experiment(s)" in err and "--force" in err
    for n in range(3):
        assert f"\n    0{n}_s_see_{n + 1}: added --layers 3\n" in err
    assert "03_s_see_4: added" not in err
    assert "\n    ... and 2 more: `pbtrun plan` with this spec shows them all." in err
    assert sweep_files(project) == before


def test_a_grown_grid_keeps_names_and_rows_and_numbers_new_experiments_past_the_group(
    project: Project, recorder: str
) -> None:
    project.spec(spec_text(recorder, mlp("0.1, 0.01, 0.001")))
    assert project.run("up", "sweep.toml", "--plain", timeout=TIMEOUT).returncode == 0
    first = names(project.status_json("ch"))
    assert first == ["00_mlp_lr_0.1", "01_mlp_lr_0.01", "02_mlp_lr_0.001"]

    # 0.3 compiles to index 00 and 0.03 to 02, which name existing experiments of the group.
    project.spec(spec_text(recorder, mlp("0.3, 0.1, 0.03, 0.01, 0.001")))
    grown = project.run("up", "sweep.toml", "--plain", timeout=TIMEOUT)
    assert grown.returncode == 0, grown.stdout + grown.stderr
    status = project.status_json("ch")
    assert names(status) == [*first, "03_mlp_lr_0.3", "04_mlp_lr_0.03"]
    assert [e["params"]["lr"] for e in status["experiments"]] == [0.1, 0.01, 0.001, 0.3, 0.03]
    assert [e["attempts"] for e in status["experiments"]] == [1, 1, 1, 1, 1]
    new = [r for r in project.records() if r["event"] == "start"][3:]
    assert sorted(r["name"] for r in new) == ["03_mlp_lr_0.3", "04_mlp_lr_0.03"]
    assert all(f"--experiment={r['name']}" in r["argv"] for r in new)  # the renamed argv ran

    by_prefix = project.run("logs", "train_dir/ch", "02_mlp")
    assert by_prefix.returncode == 0, by_prefix.stderr
    assert "# pbtrun: 02_mlp_lr_0.001, attempt 1" in by_prefix.stdout
    assert "# pbtrun: 03_mlp_lr_0.3, attempt 1" in project.run("logs", "train_dir/ch", "3").stdout
