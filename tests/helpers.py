"""Small helpers shared by several test modules."""

from __future__ import annotations

import re
from pathlib import Path

COMPAT = Path(__file__).parents[2] / "shared" / "compat"  # the old launcher's reference data
CASES = ("ant_pbt", "mujoco_all_envs", "several_groups", "tied_params")
TRAIN_DIR = "train_dir"


def colour_codes(raw: str) -> list[str]:
    """SGR sequences that set a colour (30-49, 90-107, 38;…, 48;…); bold or dim are not colours."""
    found = []
    for params in re.findall(r"\x1b\[([0-9;]*)m", raw):
        numbers = [int(p) for p in params.split(";") if p]
        if any(30 <= n <= 49 or 90 <= n <= 107 for n in numbers):
            found.append(params)
    return found


def reaper_of(logs: Path) -> int:
    """The pid of the reaper that started the (first) experiment logged in ``logs``, from its
    log's pid record."""
    from pbtrun.backends.logrecords import read_records

    log = next(logs.glob("*.log"))
    return read_records(str(log))[1]["reaper"]


def alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie counts as gone: it never runs again)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


# An experiment that waits for a file named gate<N>, then exits N (its one argument is --n=N).
GATED = (
    "import os, sys, time\n"
    "n = sys.argv[1].split('=')[1]\n"
    "while not os.path.exists(f'gate{n}'):\n"
    "    time.sleep(0.01)\n"
    "sys.exit(int(n))\n"
)


def start_gated(project, sweep: str, codes: list[int]):
    """``pbtrun up`` of one gated experiment per exit code, all at once; returns the process, the
    sweep's logs directory and the pid records of the experiments (in name order) once all started."""
    import sys

    from pbtrun.backends.logrecords import read_records

    (project.root / "gated.py").write_text(GATED)
    project.spec(
        f'name = "{sweep}"\ncommand = "{sys.executable} gated.py"\nexperiment_arg_name = ""\n'
        f'experiment_dir_arg_name = ""\n[[experiments]]\nname = "g"\ngrid = {{ n = {codes} }}\n'
    )
    proc = project.start("up", "sweep.toml", "--plain")
    logs = project.root / "train_dir" / sweep / "logs"
    records = project.wait_for(
        lambda: (
            (found := [read_records(str(p)) for p in sorted(logs.glob("*.log"))])
            and len(found) == len(codes)
            and all(f and f[1] for f in found)
            and [f[1] for f in found]
        )
    )
    return proc, logs, records


def stop_being_a_subreaper() -> None:
    """Undo what a local backend run inside pytest's own process did to it: it made the process
    a child subreaper, which would leave the orphans of later tests' processes to pytest (to stay
    zombies, since pytest reaps nothing) instead of to init."""
    import ctypes

    ctypes.CDLL(None).prctl(36, 0, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, off
