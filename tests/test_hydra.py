"""A real Hydra app swept with ``args = "hydra"``, through ``pbtrun up``: it works on the first try.

``tests/data/hydra_app.py`` is a ``@hydra.main`` app with ``lr`` and ``seed`` that writes what
reached it to ``result.json`` in its Hydra output directory. Needs ``hydra-core`` (the ``test``
extra); skipped without it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("hydra", reason="hydra-core is not installed (pip install -e '.[test]')")

APP = Path(__file__).parent / "data" / "hydra_app.py"


def test_a_hydra_app_sweep_gives_each_run_its_own_directory(project) -> None:
    project.spec(
        f"""\
        name = "hy"
        args = "hydra"
        command = [{json.dumps(sys.executable)}, {json.dumps(str(APP))}]

        [scheduler]
        max_parallel = 4

        [env]
        RUN_NAME = "{{experiment}}"

        [[experiments]]
        name = "mlp"
        grid = {{ lr = [0.1, 0.01], seed = [1, 2] }}
        """
    )
    result = project.run("up", "sweep.toml", "--num-gpus", "0", "--plain", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr

    experiments = project.status_json("hy")["experiments"]
    assert [e["status"] for e in experiments] == ["succeeded"] * 4
    sweep_dir = project.root / "train_dir" / "hy"
    seen = []
    for exp in experiments:
        name = exp["name"]
        run_dir = sweep_dir / name
        assert (run_dir / ".hydra" / "config.yaml").is_file(), f"{name}: no .hydra/ in its own directory"
        result = json.loads((run_dir / "result.json").read_text())
        assert result["job"] == name  # hydra.job.name
        assert Path(result["dir"]) == run_dir.resolve()  # hydra.run.dir
        assert (result["lr"], result["seed"]) == (exp["params"]["lr"], exp["params"]["seed"])
        assert exp["env"] == {"RUN_NAME": name}
        seen.append((result["lr"], result["seed"]))
    assert sorted(seen) == sorted((lr, seed) for lr in (0.1, 0.01) for seed in (1, 2))
    # Nothing else in the sweep directory but pbtrun's own files and the four runs' directories.
    others = {p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert others == {"logs", *(e["name"] for e in experiments)}
