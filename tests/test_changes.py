"""Changing a sweep that exists: what ``plan`` and ``up --dry-run`` show, the refusal that asks
for ``--force``, and the names and places of experiments when a grid grows. Real sweeps run
through the real CLI (see ``conftest.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
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


def cnn(command: str, k: str) -> str:
    return (
        f'[[experiments]]\nname = "cnn"\ncommand = {json.dumps(command)}\nenv = {{ K = "{k}" }}\n'
        "list = [{ exit = 0 }, { exit = 3 }]\n"
    )


def sweep_files(project: Project) -> dict[str, bytes]:
    """Every file of the sweep directory, with its bytes."""
    root = project.root / "train_dir/ch"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def names(status: dict) -> list[str]:
    return [e["name"] for e in status["experiments"]]


def test_plan_and_dry_run_show_what_the_edited_spec_changes_and_leave_the_state_alone(
    project: Project, recorder: str
) -> None:
    project.spec(spec_text(recorder, mlp("0.1, 0.01, 0.001") + cnn(recorder, "1")))
    assert project.run("up", "sweep.toml", "--plain", timeout=TIMEOUT).returncode == 1  # 01_cnn_exi_3 fails
    first = names(project.status_json("ch"))

    # A grid value added in the middle and one removed; the cnn group's command and env changed.
    project.spec(spec_text(recorder, mlp("0.1, 0.03, 0.01") + cnn(recorder + " --extra=1", "2")))
    before = sweep_files(project)
    planned = project.run("plan", "sweep.toml")
    assert planned.returncode == 0, planned.stderr
    out = planned.stdout
    assert "against the sweep's state: 2 unchanged (2 succeeded), 1 new, 2 changed, 1 removed\n" in out
    assert "1 new, appended after the existing experiments" in out
    assert "\n  03_mlp_lr_0.03\n" in out and "--lr=0.03 --experiment=03_mlp_lr_0.03\n" in out
    assert "`up --force` re-queues them" in out
    assert "\n  00_cnn_exi_0 (succeeded): added --extra=1; env K: 1 -> 2\n" in out
    assert "\n  01_cnn_exi_3 (failed): added --extra=1; env K: 1 -> 2\n" in out
    assert "\n  02_mlp_lr_0.001 (succeeded): kept for its history, never run again\n" in out
    assert "00_mlp_lr_0.1" not in out  # unchanged ones are counted, not listed again
    assert out.rstrip().endswith("state is left as it is: train_dir/ch/pbtrun.json. Nothing was created or run.")
    dry = project.run("up", "sweep.toml", "--dry-run")
    assert (dry.returncode, dry.stdout) == (0, out)

    as_json = project.run("plan", "sweep.toml", "--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    changed = {"status": "succeeded", "argv_removed": [], "argv_added": ["--extra=1"]}
    env = {"K": {"old": "1", "new": "2"}}
    assert doc["changes"] == {
        "unchanged": ["00_mlp_lr_0.1", "01_mlp_lr_0.01"],
        "new": ["03_mlp_lr_0.03"],
        "changed": [
            {"name": "00_cnn_exi_0", **changed, "env_changed": env},
            {"name": "01_cnn_exi_3", **changed, "status": "failed", "env_changed": env},
        ],
        "removed": [{"name": "02_mlp_lr_0.001", "status": "succeeded", "kept": True}],
    }
    # The experiments as the sweep would hold them: its names, its order, the new one last.
    assert names(doc) == ["00_mlp_lr_0.1", "01_mlp_lr_0.01", "00_cnn_exi_0", "01_cnn_exi_3", "03_mlp_lr_0.03"]
    assert doc["experiments"][-1]["argv"][-1] == "--experiment=03_mlp_lr_0.03"
    assert json.loads(project.run("up", "sweep.toml", "--dry-run", "--json").stdout) == doc
    assert sweep_files(project) == before  # pbtrun.json byte for byte, and nothing written beside it

    refused = project.run("up", "sweep.toml", "--plain", timeout=TIMEOUT)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "\n    00_cnn_exi_0: added --extra=1; env K: 1 -> 2" in refused.stderr
    assert sweep_files(project) == before

    forced = project.run("up", "sweep.toml", "--force", "--plain", timeout=TIMEOUT)
    assert forced.returncode == 1, forced.stdout + forced.stderr  # 01_cnn_exi_3 fails again
    status = project.status_json("ch")
    assert names(status) == [*first, "03_mlp_lr_0.03"]  # what plan said, the removed one in its place
    assert [e["removed"] for e in status["experiments"]] == [False, False, True, False, False, False]
    again = project.run("plan", "sweep.toml")
    assert "5 unchanged (4 succeeded, 1 failed), 0 new, 0 changed, 0 removed" in again.stdout
    assert "the spec changes nothing" in again.stdout


def test_plan_of_a_new_sweep_has_no_changes(project: Project, recorder: str) -> None:
    project.spec(spec_text(recorder, mlp("0.1")))
    doc = json.loads(project.run("plan", "sweep.toml", "--json").stdout)
    assert "changes" not in doc
    assert "against the sweep's state" not in project.run("plan", "sweep.toml").stdout


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


GATED = """
import os, sys, time
with open("order.txt", "a") as f:
    f.write(os.environ["PBTRUN_EXPERIMENT"] + "\\n")
while not os.path.exists("gate"):
    time.sleep(0.02)
"""


def test_experiments_added_to_a_running_sweep_launch_after_its_pending_ones(project: Project) -> None:
    (project.root / "gated.py").write_text(GATED)
    command = f"{sys.executable} gated.py"
    project.spec(spec_text(command, '[[experiments]]\nname = "g"\ngrid = { seed = [1, 2, 3] }\n', max_parallel=1))
    proc = project.start("up", "sweep.toml", "--plain")
    order = project.root / "order.txt"
    project.wait_for(order.exists, timeout=TIMEOUT)
    project.wait_for(lambda: project.status_json("ch")["counts"]["running"] == 1, timeout=TIMEOUT)

    project.spec(spec_text(command, '[[experiments]]\nname = "g"\ngrid = { seed = [1, 5, 3] }\n', max_parallel=1))
    planned = project.run("plan", "sweep.toml").stdout
    assert "2 unchanged (1 pending, 1 running), 1 new, 0 changed, 1 removed\n" in planned, planned
    assert "\n  01_g_see_2 (pending): dropped (it never ran)\n" in planned
    assert "\n  03_g_see_5\n" in planned
    added = project.run("up", "sweep.toml", "--plain", timeout=TIMEOUT)
    assert added.returncode == 3, added.stdout + added.stderr

    Path(project.root / "gate").touch()
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, out + err
    assert order.read_text().split() == ["00_g_see_1", "02_g_see_3", "03_g_see_5"]
    assert names(project.status_json("ch")) == ["00_g_see_1", "02_g_see_3", "03_g_see_5"]
