"""How deeply a spec's or a state's values may nest, and finding where one nests deeper.

Python's parsers and printers (``tomllib``, ``json``, ``repr``) recurse once or more per level
of nesting, so a value a few hundred levels deep ends them with a ``RecursionError`` rather than
a message. No sweep needs more than a few levels (a tied pair inside a grid list inside a grid
is three), so pbtrun refuses anything deeper than ``MAX_DEPTH`` where it is read, with its place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MAX_DEPTH = 64  # arrays and tables inside each other; far from where any of Python's recursion ends

TOO_DEEP = (
    f"nested more than {MAX_DEPTH} levels deep (arrays and tables inside each other): pbtrun reads "
    "no value that deep, and no sweep needs one. Flatten it"
)

# What changes the nesting depth of TOML text, or hides brackets from it: brackets and braces,
# strings (a multi-line one first), comments, and newlines (counted for the line).
_TOML_TOKEN = re.compile(r'"""|\'\'\'|["\'#\[\]{}\n]')
_STRING_END = {
    '"""': re.compile(r'(?:[^\\]|\\.)*?"""', re.S),
    "'''": re.compile(r".*?'''", re.S),
    '"': re.compile(r'(?:[^\\"\n]|\\.)*"'),
    "'": re.compile(r"[^'\n]*'"),
}


def deep_line(text: str) -> int | None:
    """The line of TOML ``text`` where arrays and inline tables first nest more than
    ``MAX_DEPTH`` deep, if they do. A loop, not a recursion: it is for text too deep to parse.
    Table headers (``[a]``, ``[[a]]``) open and close on their line, so they need no exception."""
    depth, line, at = 0, 1, 0
    while match := _TOML_TOKEN.search(text, at):
        token, at = match.group(), match.end()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif token in "]}":
            depth -= 1
        elif token == "\n":
            line += 1
        elif token == "#":
            end = text.find("\n", at)
            at = len(text) if end < 0 else end
        else:
            end = _STRING_END[token].match(text, at)
            if end is None:  # not TOML the parser accepts: it says where, not this
                return None
            line += text.count("\n", at, end.end())
            at = end.end()
    return None


def too_deep(value: Any, path: tuple = ()) -> tuple | None:
    """The key path (keys and list indexes) of a place in ``value`` nested more than
    ``MAX_DEPTH`` levels deep, or None. A loop with a stack, not a recursion."""
    stack: list[tuple[tuple, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if len(where) - len(path) > MAX_DEPTH:
            return where
        stack.extend(_children(where, item))
    return None


def _children(where: tuple, item: Any) -> Iterator[tuple[tuple, Any]]:
    if isinstance(item, dict):
        yield from (((*where, k), v) for k, v in item.items() if isinstance(v, dict | list | tuple))
    elif isinstance(item, list | tuple):  # tuples: a run module's values, before they become TOML
        yield from (((*where, i), v) for i, v in enumerate(item) if isinstance(v, dict | list | tuple))
