"""The entry point of ``pbtrun`` and ``python -m pbtrun``.

``pbtrun up SPEC`` with ordinary flags is parsed without click (:mod:`pbtrun.ui.quickargs`): a
sweep's first experiments start sooner, since click's import is a large share of start-up (see
docs/performance.md). Every other command line goes to click.

Ctrl-C while the CLI's modules are still being imported (the start of every command) ends
pbtrun with exit code 130 like any other interruption, not with a traceback.
"""

import sys


def main() -> None:
    try:
        if sys.argv[1:2] == ["up"]:
            from pbtrun.ui.quickargs import parse_up

            if (params := parse_up(sys.argv[2:])) is not None:
                from pbtrun.ui.commands import run_up_quickly

                run_up_quickly(params)  # never returns
        from pbtrun.ui.cli import main as run
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    main()
