"""The placeholders a spec may write in commands, parameter values and env values.

``{experiment}``, ``{experiment_dir}`` and ``{sweep_dir}`` are filled when the spec is compiled;
``{attempt}`` only at launch, where :func:`fill_attempt` fills it. Pure functions, no I/O, and
nothing but ``re`` to import: the scheduler calls :func:`fill_attempt` on every launch.

Only these exact tokens are replaced, in one pass (a value filled in is never read again for
tokens). Every other brace is passed as written, so JSON arguments (``--net={"depth": 4}``) and
format strings an app reads itself (``--fmt={step}``) keep working; so is ``${...}``, which is
OmegaConf's (Hydra's) interpolation or the shell's, never pbtrun's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

COMPILED = ("experiment", "experiment_dir", "sweep_dir")  # filled by the spec layer
KNOWN = (*COMPILED, "attempt")
ATTEMPT = "{attempt}"

# A bare identifier in braces, not preceded by "$". A token that is no placeholder stays as it is.
_TOKEN = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``{name}`` of ``values`` replaced by its value; anything else untouched."""
    if "{" not in text:
        return text
    return _TOKEN.sub(lambda m: values.get(m[1], m[0]), text)


def fill_attempt(argv: Sequence[str], env: Mapping[str, str], number: int) -> tuple[Sequence[str], Mapping[str, str]]:
    """The argv and env of attempt ``number`` (1, 2, ...): every ``{attempt}`` replaced by it.

    The compiled argv and env keep ``{attempt}`` (the state records the definition, the same for
    every attempt); whoever launches an attempt calls this. Where neither holds the token, which is
    nearly always, ``argv`` and ``env`` themselves come back: no copy per launch.
    """
    in_argv = any(ATTEMPT in word for word in argv)
    in_env = any(ATTEMPT in value for value in env.values())
    if not (in_argv or in_env):
        return argv, env
    values = {"attempt": str(number)}
    if in_argv:
        argv = tuple(fill(word, values) for word in argv)
    if in_env:
        env = {key: fill(value, values) for key, value in env.items()}
    return argv, env


def names(text: str) -> list[str]:
    """Every ``{name}`` token in ``text``, in order: what :func:`fill` would look up."""
    return [m[1] for m in _TOKEN.finditer(text)] if "{" in text else []


def has_any(text: str, attempt: bool = False) -> bool:
    """Whether ``text`` holds a token :func:`fill` would replace with one of :data:`COMPILED`
    (or, with ``attempt``, ``{attempt}`` too)."""
    names = KNOWN if attempt else COMPILED
    return "{" in text and any(m[1] in names for m in _TOKEN.finditer(text))


def problem(text: str) -> str | None:
    """What is wrong with the placeholders in ``text``: a ``{name}`` that is no placeholder but
    close to one (``{experimnt}``, ``{Experiment}``) is taken for a typo; None if nothing is.

    Only near misses are refused: ``{lr}`` or ``{step}`` may well be meant for the app (a format
    string it fills itself), and refusing every unknown ``{name}`` would break such commands.
    """
    if "{" not in text:
        return None
    for match in _TOKEN.finditer(text):
        word = match[1]
        if word in KNOWN:
            continue
        import difflib  # here: only a near miss needs it

        close = difflib.get_close_matches(word.lower(), KNOWN, n=1, cutoff=0.8)
        if close:
            known = ", ".join(f"{{{k}}}" for k in KNOWN)
            return (
                f"{{{word}}} is not a pbtrun placeholder. Did you mean {{{close[0]}}}? The placeholders are "
                f"{known}; any other braces are passed to the program as written."
            )
    return None
