"""``pbtrun gpus``: the GPUs pbtrun sees, their memory, utilisation and processes (pbtrun's own
experiments named by sweep and experiment), as a table or, with ``--json``, as the document a
snapshot is recorded from. Everything it reads is imported inside the command, so that
``pbtrun --help`` loads none of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from pbtrun.ui.clicompletion import complete_sweeps
from pbtrun.ui.cliparts import command


@command("gpus")
@click.argument("sweep", required=False, type=click.Path(path_type=Path), shell_complete=complete_sweeps)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (a snapshot: see PBTRUN_GPU_SOURCE).")
def gpus(sweep: Path | None, as_json: bool) -> None:
    """The GPUs pbtrun may use and what runs on them; with SWEEP, where its next experiment would go."""
    from pbtrun.devices.inventory import read_inventory
    from pbtrun.devices.owners import owners
    from pbtrun.devices.snapshot import to_json
    from pbtrun.ui import gpuview

    paths = None
    if sweep is not None:
        from pbtrun.ui import targets

        paths = targets.sweep_at(sweep, "gpus")
    inventory = read_inventory()
    document = to_json(inventory, owners(p.pid for g in inventory.gpus for p in g.processes))
    placement = None
    if paths is not None:
        from pbtrun.ui.gpunext import next_placement

        placement = next_placement(paths, inventory)
    if as_json:
        if placement is not None:
            document["next_placement"] = placement
        click.echo(json.dumps(document, indent=2))
        return
    for line in gpuview.render(document, _cwd()):
        click.echo(line)
    if placement is not None:
        click.echo(f"next in {sweep}: {placement['text']}")


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None  # a deleted working directory: sweeps are shown by their full paths
