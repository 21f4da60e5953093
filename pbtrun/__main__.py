"""The entry point of ``pbtrun`` and ``python -m pbtrun``.

Ctrl-C while the CLI's modules are still being imported (the first tenth of a second) ends
pbtrun with exit code 130 like any other interruption, not with a traceback.
"""


def main() -> None:
    try:
        from pbtrun.cli import main as run
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    main()
