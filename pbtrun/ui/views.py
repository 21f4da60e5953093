"""Which view a run gets: the live view on a terminal, plain lines otherwise.

Its own module so that the two views depend on nothing above them: :mod:`pbtrun.ui.plain` and
:mod:`pbtrun.ui.live` share the tracker and the summary, and neither needs to know of the other's choice.
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING

from pbtrun.state.store import SweepPaths
from pbtrun.ui.plain import PlainView

if TYPE_CHECKING:
    from pbtrun.ui.live import LiveView


def make_view(paths: SweepPaths, plain: bool | None, stream: IO[str] | None = None) -> LiveView | PlainView:
    """The live view on a terminal, plain lines otherwise (``plain=None``: decide by ``stream``).

    A terminal that cannot move the cursor (``TERM=dumb``) gets plain lines too.
    """
    out = stream if stream is not None else sys.stdout
    if plain is None:
        plain = not _isatty(out) or os.environ.get("TERM") in ("dumb", "unknown")
    if plain:
        return PlainView(paths, stream)
    from rich.console import Console  # only here: plain lines (pipes, --plain) never load rich

    from pbtrun.ui.live import LiveView

    return LiveView(paths, Console() if stream is None else Console(file=stream))


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
