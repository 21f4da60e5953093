"""What a user meets every day, through the real CLI: tails of logs that keep a traceback's
indentation, `logs -n` and `logs -f` on an experiment still waiting, the sweep a command means
when none is named or one is mistyped, what `up` says beside a running scheduler or given a
Python file, the help, and status tables that show which parameters each row ran with."""

from __future__ import annotations

import sys

TIMEOUT = 20


# --------------------------------------------------------------------------- tails keep indentation


def test_tracebacks_keep_their_indentation_in_failed_tails_and_the_summary(project):
    (project.root / "crash.py").write_text("def train():\n    raise ValueError('lr too high')\n\n\ntrain()\n")
    project.spec(f'name = "tb"\ncommand = "{sys.executable} crash.py"\n[[experiments]]\nname = "a"\n')
    up = project.run("up", "sweep.toml", "--plain")
    assert up.returncode == 1
    summary = [line.split("| ", 1)[1] for line in up.stdout.splitlines() if "  | " in line]
    script = project.root / "crash.py"
    assert summary == [  # each line used to begin right after the bar
        f'  File "{script}", line 5, in <module>',
        "    train()",
        f'  File "{script}", line 2, in train',
        "    raise ValueError('lr too high')",
        "ValueError: lr too high",
    ]
    tails = project.run("logs", "train_dir/tb", "--failed").stdout.splitlines()
    assert "    Traceback (most recent call last):" in tails
    assert "        raise ValueError('lr too high')" in tails  # four spaces of pbtrun's, four of Python's
