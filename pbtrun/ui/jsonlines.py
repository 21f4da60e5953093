"""A long JSON document written in pieces, as fast as the json module's compact encoder allows:
indented, except for its one long list (of experiments), which comes last with one item per
line, its items made as they are written (:class:`Rows`) and, for very long lists, half of them
encoded by a forked helper process on another core (:mod:`pbtrun.ui.forkedwork`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class Rows:
    """A long list in a JSON document whose items are made as they are written (``json_lines``):
    ``make(x)`` for each ``x`` of ``source``. Making them is much of the work of
    ``status --json`` at 100,000 experiments, and a second process can then share it. (A plain
    class, like the other records on ``pbtrun up``'s path: defining a dataclass costs start-up
    time at import.)"""

    __slots__ = ("make", "source")

    def __init__(self, source: Sequence[Any], make: Callable[[Any], Any]) -> None:
        self.source = source
        self.make = make


SPLIT_ROWS = 20_000  # from this many items on, a second process encodes half of them
CHUNK = 1000


def json_lines(document: dict[str, Any], key: str) -> Iterator[str]:
    """``document`` as JSON text, in pieces: indented, except that ``document[key]``, a long
    list (of experiments; a list or ``Rows``), comes last with one item per line. The json
    module indents only in pure Python, many times slower than its compact encoder, which
    shows at 100,000 experiments; and this layout is as easy to read and to grep. The text is
    ASCII (non-ASCII characters are escaped), as ``json.dumps`` writes it by default."""
    rest = {k: v for k, v in document.items() if k != key}
    head = json.dumps(rest, indent=2)[:-2] + ",\n" if rest else "{\n"
    rows = document[key]
    source, make = (rows.source, rows.make) if isinstance(rows, Rows) else (rows, None)
    if not source:
        yield head + f'  "{key}": []\n}}\n'
        return
    yield head + f'  "{key}": [\n'
    encode = _item_encoder()
    cut, helper = 0, None
    if len(source) >= SPLIT_ROWS:
        from pbtrun.ui.forkedwork import ForkedWork  # only for long lists: most callers never need it

        cut = len(source) // 2 // CHUNK * CHUNK
        if cut:  # (under two chunks there is no second half to give away)
            helper = ForkedWork.start(lambda: "".join(_item_lines(source[cut:], make, encode)).encode("ascii"))
    try:
        yield from _item_lines(source[: cut if helper else None], make, encode)
    except BaseException:  # the reader stopped (a closed pipe, Ctrl-C): so does the helper
        if helper is not None:
            helper.cancel()
        raise
    if helper is not None:  # a helper process encoded the second half meanwhile (two cores)
        text = helper.result()
        yield ",\n"
        yield from _item_lines(source[cut:], make, encode) if text is None else (text.decode("ascii"),)
    yield "\n  ]\n}\n"


def _item_encoder() -> Callable[[Any], str]:
    """``json.dumps`` of one item, made once: ``JSONEncoder.encode`` builds the C encoder anew
    for every call, which adds up over 100,000 experiments."""
    from json.encoder import c_make_encoder, encode_basestring_ascii

    if c_make_encoder is None:  # an interpreter without the json accelerator
        return json.JSONEncoder().encode

    def refuse(value: Any) -> Any:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    encode = c_make_encoder(None, refuse, encode_basestring_ascii, None, ": ", ", ", False, False, True)
    return lambda item: "".join(encode(item, 0))


def _item_lines(items: Sequence[Any], make: Callable[[Any], Any] | None, encode: Callable[[Any], str]) -> Iterator[str]:
    """The items, encoded, one per line, joined by commas (no separator before the first)."""
    for start in range(0, len(items), CHUNK):
        part = items[start : start + CHUNK]
        made = part if make is None else map(make, part)
        yield ("," + "\n" if start else "") + ",\n".join("    " + encode(item) for item in made)
