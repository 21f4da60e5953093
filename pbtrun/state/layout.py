"""The layout of ``pbtrun.json``'s bytes: an indented head, then one experiment per line (keys
sorted), so that a person can read and diff it, and so that pbtrun can write and read it in
chunks, at C speed (the json module's indented encoder is pure Python, many times slower than its
compact one). Any other layout of the same JSON (an older pbtrun's, a hand-edited file) is read
whole instead.

Bytes in, records out and back: no file I/O here (``store.py`` reads and writes the file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from pbtrun.errors import StateError
from pbtrun.state.codec import experiment_from, experiment_json, head_json, sweep_from
from pbtrun.state.records import Experiment, Sweep

_BODY_START = b'\n "experiments": [\n'
_BODY_END = b"\n ]\n}\n"
_ROW_SEP = b",\n"
CHUNK_ROWS = 2000


def dump_chunks(sweep: Sweep, rows: dict[str, tuple[Experiment, bytes]] | None = None) -> Iterator[bytes]:
    """``pbtrun.json``'s bytes, in chunks of a few thousand experiments (memory stays small).

    ``rows``: each experiment's line as last written, with the record it was made from, kept by
    the caller from one save to the next: a record that is still the same object (records are
    immutable: a change replaces them) is not encoded again."""
    head = json.dumps(head_json(sweep), indent=1, sort_keys=True).encode()
    experiments = list(sweep.experiments.values())
    if not experiments:
        yield head[:-2] + b',\n "experiments": []\n}\n'
        return
    yield head[:-2] + b"," + _BODY_START
    encode = json.JSONEncoder(sort_keys=True).encode

    def line(exp: Experiment) -> bytes:
        return b"  " + encode(experiment_json(exp)).encode()

    if rows is not None and len(rows) > len(experiments):
        rows.clear()  # experiments were dropped (a reload): keep no lines of records gone
    for start in range(0, len(experiments), CHUNK_ROWS):
        chunk = experiments[start : start + CHUNK_ROWS]
        if rows is None:
            lines = [line(e) for e in chunk]
        else:
            lines = []
            for e in chunk:
                known = rows.get(e.id)
                if known is None or known[0] is not e:
                    known = rows[e.id] = (e, line(e))
                lines.append(known[1])
        yield (_ROW_SEP if start else b"") + _ROW_SEP.join(lines)
    yield _BODY_END


def dump(sweep: Sweep) -> bytes:
    return b"".join(dump_chunks(sweep))


def parse_rows(data: bytes) -> Sweep | None:
    """Read pbtrun's own layout (see ``dump_chunks``) chunk by chunk: the whole file is never one
    tree of dicts in memory. None if the file has another layout (then it is read whole)."""
    start = data.find(_BODY_START)
    if start < 1 or not data.endswith(_BODY_END) or start + len(_BODY_START) > len(data) - len(_BODY_END):
        return None
    try:
        head = json.loads(data[: start - 1] + b"\n}")  # without the comma before the body
        sweep = sweep_from(head)
        shared: dict = {}
        rows_read = 0
        for rows, expected in _row_chunks(data, start + len(_BODY_START), len(data) - len(_BODY_END)):
            raw = json.loads(b"[" + rows + b"]")
            if len(raw) != expected:  # not one experiment per line: not our layout after all
                return None
            rows_read += expected
            for item in raw:
                sweep.update(experiment_from(item, shared, sweep.disk_format))
        if rows_read != len(sweep.experiments):  # an experiment listed twice: the whole-file reader names it
            return None
    except (ValueError, TypeError, KeyError, AttributeError, StateError, RecursionError):
        return None  # not our layout, or damaged: the whole-file reader says precisely what is wrong
    sweep.dirty.clear()
    return sweep


def _row_chunks(data: bytes, begin: int, end: int) -> Iterator[tuple[bytes, int]]:
    """Pieces of ``data[begin:end]``, the experiment rows, cut between two rows: (bytes, rows)."""
    while begin < end:
        cut = begin
        for _ in range(CHUNK_ROWS):
            cut = data.find(_ROW_SEP, cut + 1, end)
            if cut < 0:
                break
        stop = end if cut < 0 else cut
        piece = data[begin:stop]
        yield piece, piece.count(b"\n") + 1
        begin = stop + len(_ROW_SEP)
