"""Where a key is written in a spec's text, so that every spec error names its line.

``tomllib`` returns values, not places. :class:`SpecSource` holds the spec's text and makes the
:class:`SpecError` for a key path (``("experiments", 1, "list", 2, "lr")``): the file, the line,
the key in words and the line itself. The line comes from :func:`key_lines`, a small reader of
TOML's structure (not its values), run only when an error needs it, on text TOML has already
accepted. It skips comments and strings, so a commented-out key or a ``key =`` inside a string is
never taken for the key.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path

from pbtrun.errors import SpecError
from pbtrun.printable import clip


class SpecSource:
    """The spec's text, to point errors at the line where a key is written."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.lines = [line.rstrip("\r") for line in text.split("\n")]  # TOML's lines, not str.splitlines'
        self._places: dict[tuple, int] | None = None

    def error(self, where: Sequence[str | int], problem: str) -> SpecError:
        """``<file>, line N: <key>: <problem>``, then the line itself, as every spec error reads."""
        line = self.find_line(where)
        place = f"{self.path}, line {line}" if line else str(self.path)
        message = f"{place}: {_in_words(where)}: {problem}"
        if line:
            message += f"\n    {line} | {clip(self.lines[line - 1].strip())}"
        return SpecError(message)

    def find_line(self, where: Sequence[str | int]) -> int | None:
        """The line of a key path: where that key is written, else where the nearest table, array
        element or key holding it is."""
        if self._places is None:
            self._places = key_lines(self.text)
        path = tuple(where)
        while path:
            if path in self._places:
                return self._places[path]
            path = path[:-1]
        return None


def _in_words(where: Sequence[str | int]) -> str:
    """A key path as a user writes it: ``experiments[2].list[3].lr`` (elements counted from 1)."""
    parts: list[str] = []
    for key in where:
        if isinstance(key, int):
            parts.append(f"[{key + 1}]")
        else:
            parts.append(("." if parts else "") + key)
    return "".join(parts) or "(top level)"


def key_lines(text: str) -> dict[tuple, int]:
    """Every key path of a valid TOML text, with the line (1-based) it is written on.

    Table headers (``[a.b]``; ``[[a]]`` counts its entries: ``("experiments", 1)``), keys (a
    dotted one gives each of its prefixes) and array elements (``("list", 2)``: the line the third
    element starts on) all have places. Best effort: should the text surprise the reader, the
    places found so far are returned, and errors simply name fewer lines.
    """
    reader = _KeyLineReader(text)
    with contextlib.suppress(_UnexpectedText, IndexError, tomllib.TOMLDecodeError, RecursionError):
        reader.document()
    return reader.found


class _UnexpectedText(Exception):
    """The text is not what :class:`_KeyLineReader` expects: it stops there, keeping what it found."""


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}\n#]|\Z")  # numbers, booleans, dates and times hold none of these


class _KeyLineReader:
    """A small reader of TOML's structure, not its values: headers, keys, arrays, inline tables
    and the extent of strings. Every loop consumes text or stops (``_UnexpectedText``,
    ``IndexError``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.line = 1
        self.found: dict[tuple, int] = {}
        self.arrays: dict[tuple, int] = {}  # arrays of tables: their entries so far

    def document(self) -> None:
        table: tuple = ()
        while True:
            self.skip(newlines=True)
            if self.at >= len(self.text):
                return
            if self.text[self.at] == "[":
                table = self.header()
            else:
                self.pair(table)
            self.skip(newlines=False)
            if self.at < len(self.text) and self.text[self.at] != "\n":
                raise _UnexpectedText

    def skip(self, newlines: bool) -> None:
        """Past spaces and comments, and newlines too if ``newlines``."""
        text = self.text
        while self.at < len(text):
            char = text[self.at]
            if char in " \t\r":
                self.at += 1
            elif char == "\n" and newlines:
                self.at += 1
                self.line += 1
            elif char == "#":
                end = text.find("\n", self.at)
                self.at = len(text) if end < 0 else end
            else:
                return

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.at):
            raise _UnexpectedText
        self.at += len(token)

    def header(self) -> tuple:
        """``[a.b]`` or ``[[a.b]]``: the path of the table it opens (an array's newest entry)."""
        line, double = self.line, self.text.startswith("[[", self.at)
        self.at += 2 if double else 1
        keys = self.key()
        self.expect("]]" if double else "]")
        if double:
            array = (*self.resolve(keys[:-1]), keys[-1])
            count = self.arrays.get(array, 0)
            self.arrays[array] = count + 1
            table = (*array, count)
        else:
            table = self.resolve(keys)
        for end in range(1, len(table) + 1):
            self.found.setdefault(table[:end], line)
        return table

    def resolve(self, keys: Sequence[str]) -> tuple:
        """A header's keys as a path: a key naming an array of tables means its newest entry."""
        path: tuple = ()
        for key in keys:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def pair(self, table: tuple) -> None:
        """``key = value`` in ``table``."""
        line, keys = self.line, self.key()
        for end in range(1, len(keys) + 1):
            self.found.setdefault((*table, *keys[:end]), line)
        self.expect("=")
        self.value((*table, *keys))

    def key(self) -> list[str]:
        """A dotted key's parts, quoted ones decoded; leaves the reader past the spaces after it."""
        keys = []
        while True:
            self.skip(newlines=False)
            start = self.at
            if self.text[start] in "\"'":
                self.string()
                keys.append(tomllib.loads(f"k = {self.text[start : self.at]}")["k"])
            else:
                bare = _BARE_KEY.match(self.text, start)
                if bare is None:
                    raise _UnexpectedText
                keys.append(bare.group())
                self.at = bare.end()
            self.skip(newlines=False)
            if not self.text.startswith(".", self.at):
                return keys
            self.at += 1

    def value(self, path: tuple) -> None:
        self.skip(newlines=False)
        char = self.text[self.at]
        if char in "\"'":
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            end = _SCALAR_END.search(self.text, self.at)
            if end is None or end.start() == self.at:
                raise _UnexpectedText
            self.at = end.start()

    def array(self, path: tuple) -> None:
        """``[a, b, ...]``: each element's place is the line it starts on."""
        self.at += 1
        index = 0
        while True:
            self.skip(newlines=True)
            if self.text[self.at] == "]":
                self.at += 1
                return
            self.found.setdefault((*path, index), self.line)
            self.value((*path, index))
            self.skip(newlines=True)
            if self.text[self.at] == ",":
                self.at += 1
                index += 1
            elif self.text[self.at] != "]":
                raise _UnexpectedText

    def inline_table(self, path: tuple) -> None:
        self.at += 1
        while True:
            self.skip(newlines=True)
            if self.text[self.at] == "}":
                self.at += 1
                return
            self.pair(path)
            self.skip(newlines=True)
            if self.text[self.at] == ",":
                self.at += 1
            elif self.text[self.at] != "}":
                raise _UnexpectedText

    def string(self) -> None:
        """Past a string of any of TOML's four kinds, counting the lines a multi-line one spans."""
        text, start = self.text, self.at
        quote = text[start]
        escapes = quote == '"'  # literal strings ('...') have no escapes
        if text.startswith(quote * 3, start):
            end = start + 3
            while not text.startswith(quote * 3, end):
                if end >= len(text):
                    raise _UnexpectedText
                end += 2 if escapes and text[end] == "\\" else 1
            end += 3
            for _ in range(2):  # up to two more quotes end the content: """a""""" holds a""
                if end < len(text) and text[end] == quote:
                    end += 1
        else:
            end = start + 1
            while text[end] != quote:
                if text[end] == "\n":
                    raise _UnexpectedText
                end += 2 if escapes and text[end] == "\\" else 1
            end += 1
        self.line += text.count("\n", start, end)
        self.at = end
