"""The options of ``pbtrun up``, declared once and without click: each one's parameter, spellings,
kind of value, limits, default and help.

Two parsers are built from this table, so they cannot drift apart: :mod:`pbtrun.ui.quickargs`
parses ``pbtrun up SPEC`` with ordinary flags without loading click (a large share of start-up;
see docs/performance.md), and :mod:`pbtrun.ui.cliparts` makes click's options of ``up``, and of
``plan`` and ``resume``, which share some of them. A plain module of named tuples: the quick path
must not pay for click, nor for defining dataclasses.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pbtrun.limits import MAX_GPUS, MAX_GRACE_S, MAX_PAUSE_S

# The kinds of value an option takes.
FLAG = "flag"  # none: given means True
INTEGER = "integer"  # a whole number, within the limits where there are any
SECONDS = "seconds"  # a number of seconds within the limits: never nan, never inf
TEXT = "text"  # any string, the empty one included


class Option(NamedTuple):
    """One option. ``spellings``: the first is the one help and shell completion show; one with
    underscores is the old launcher's (``--num_gpus``), accepted for its users' scripts and
    hidden. ``low`` and ``high``: the limits, both given for seconds. ``fast_path``: False leaves
    a command line with it to click (``--dry-run`` runs nothing: no sweep waits for it)."""

    name: str  # the parameter the command receives
    spellings: tuple[str, ...]
    kind: str
    help: str
    low: float | None = None
    high: float | None = None
    high_in_words: str = ""  # the maximum as an error message says it ("a day")
    default: Any = None
    show_default: bool = False
    fast_path: bool = True


# The flags that override the spec's [scheduler] (up, plan, resume).
PLACEMENT = (
    Option("num_gpus", ("--num-gpus", "--num_gpus"), INTEGER, "GPUs to use (ids 0..N-1).", low=0, high=MAX_GPUS),
    Option("max_parallel", ("--max-parallel", "--max_parallel"), INTEGER, "Experiments at once."),
    Option(
        "experiments_per_gpu",
        ("--experiments-per-gpu", "--experiments_per_gpu"),
        INTEGER,
        "Experiments per GPU; -1 leaves CUDA_VISIBLE_DEVICES alone.",
    ),
    Option(
        "pause_between",
        ("--pause-between", "--pause_between"),
        SECONDS,
        "Seconds between two launches.",
        low=0,
        high=MAX_PAUSE_S,
        high_in_words="a day",
    ),
    Option(
        "max_failures",
        ("--max-failures", "--max_failures"),  # not an old launcher flag, but spelled as its siblings are
        INTEGER,
        "Stop launching after N experiments failed (the running ones finish).",
        low=1,
    ),
)

# The flags of the commands that run a sweep (up, resume).
RUNNING = (
    Option(
        "grace",
        ("--grace",),
        SECONDS,
        "Seconds between SIGINT and SIGTERM when stopping.",
        low=0,
        high=MAX_GRACE_S,
        high_in_words="a day",
        default=30.0,
        show_default=True,
    ),
    Option("retry_failed", ("--retry-failed",), FLAG, "Run failed experiments again (lost ones too).", default=False),
    Option(
        "retry_lost",
        ("--retry-lost",),
        FLAG,
        "Run again the lost ones: their outcome is unknowable (a reboot).",
        default=False,
    ),
    Option("plain", ("--plain",), FLAG, "Plain timestamped lines instead of the live view.", default=False),
    Option(
        "detach",
        ("--detach",),
        FLAG,
        "On a cluster: submit, record the job ids and exit 0; status and resume follow the jobs.",
        default=False,
    ),
    Option(
        "cancel_on_interrupt",
        ("--cancel-on-interrupt",),
        FLAG,
        "On Slurm: Ctrl-C cancels the sweep's jobs (by default it only stops watching them).",
        default=False,
    ),
)

# Where the sweep's directory goes (up, plan).
TRAIN_DIR = Option("train_dir", ("--train-dir", "--train_dir"), TEXT, "Train dir (overrides the spec's train_dir).")

# Every option of `pbtrun up`, in the order its help lists them.
UP = (
    *PLACEMENT,
    *RUNNING,
    TRAIN_DIR,
    Option("backend", ("--backend",), TEXT, "Where experiments run: local, slurm or template (overrides the spec)."),
    Option("force", ("--force",), FLAG, "Re-queue experiments whose command changed in the spec.", default=False),
    Option(
        "dry_run",
        ("--dry-run",),
        FLAG,
        "Print every experiment's command, env and GPU; run nothing.",
        default=False,
        fast_path=False,
    ),
    Option(
        "as_json",
        ("--json",),
        FLAG,
        "With --dry-run: the plan as JSON (as `plan --json`).",
        default=False,
        fast_path=False,
    ),
)
