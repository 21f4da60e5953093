"""Text from a spec, a state or a log, made fit for a terminal.

Names, parameter values, paths and commands come from files that someone else may have written.
Printed as they are, an escape sequence in one (``\\x1b]0;TITLE\\x07``, ``\\x1b[31m``) retitles or
recolours the terminal, and a newline splits a line that scripts read as one event. Everything
pbtrun prints that such a value reaches goes through :func:`printable` (the experiments' own
output, which ``pbtrun logs`` prints as it is, on purpose, does not).
"""

from __future__ import annotations

import re

# C0 (newline and tab included: both break a line's layout), DEL and C1 (\x9b is a CSI of its own).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

LINE_SHOWN = 200  # characters of a source line that an error message echoes
DIGITS_SHOWN = 15  # a count with more digits is said as a power of ten


def printable(text: str) -> str:
    """``text`` with every control character written as Python escapes it (``\\x1b``, ``\\n``);
    everything else, letters of any script included, is left as it is. Text without a control
    character (nearly all) is returned as it is, at the cost of one search."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def printable_lines(text: str) -> str:
    """:func:`printable` for a message of several lines: its line breaks are kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


def clip(text: str, limit: int = LINE_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quantity(number: int) -> str:
    """A number as a message says it: in digits, or past ``DIGITS_SHOWN`` of them as "more than
    10^N" (a grid's size can have hundreds of digits, and so can a mistyped value)."""
    if abs(number) < 10**DIGITS_SHOWN:
        return f"{number:,}"
    return f"{'less than -' if number < 0 else 'more than '}10^{_power_below(abs(number))}"


def _power_below(number: int) -> int:
    """The largest N with 10^N < number, without writing the number out in digits."""
    power = number.bit_length() * 30103 // 100000 + 1  # log10(2) = 0.30103: a little above
    while 10**power >= number:
        power -= 1
    return power
