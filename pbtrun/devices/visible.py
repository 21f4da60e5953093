"""``CUDA_VISIBLE_DEVICES`` read as CUDA itself reads it, and the driver's GPUs it selects.

CUDA's rules: tokens are comma separated, with whitespace around them ignored; each is a
non-negative index, a GPU UUID (``GPU-...``, possibly only its first characters) or a MIG
instance (``MIG-...``). Parsing stops at the first token that is none of these (``-1``, ``abc``,
an empty one): what follows it is ignored, so an empty value, or one that starts with such a
token, hides every GPU. A valid token that names no device (an index the driver does not have)
stops CUDA the same way: ``1,7,2`` on a four-GPU machine shows CUDA GPU 1 only. CUDA refuses a
device named twice; we keep its first mention.

Pure functions: the environment is read by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pbtrun.devices.model import Gpu

_INDEX = re.compile(r"[0-9]+")
_UUID = re.compile(r"(GPU|MIG)-[0-9A-Za-z-]*")


def parse_visible(value: str | None) -> tuple[str, ...] | None:
    """The tokens of ``CUDA_VISIBLE_DEVICES`` in order, as spelled; None when it is unset (no
    restriction), an empty tuple when it hides every GPU."""
    if value is None:
        return None
    tokens: list[str] = []
    seen: set[str] = set()
    for raw in value.split(","):
        token = raw.strip()
        if not (_INDEX.fullmatch(token) or _UUID.fullmatch(token)):
            break  # CUDA stops here: an invalid token hides itself and every one after it
        key = _key(token)
        if key not in seen:
            seen.add(key)
            tokens.append(token)
    return tuple(tokens)


def _key(token: str) -> str:
    """What makes two tokens the same device: ``02`` is ``2``; UUIDs ignore case."""
    return str(int(token)) if _INDEX.fullmatch(token) else token.lower()


def is_index(token: str) -> bool:
    return _INDEX.fullmatch(token) is not None


def restrict(gpus: Sequence[Gpu], tokens: Iterable[str]) -> tuple[tuple[Gpu, ...], tuple[str, ...]]:
    """The GPUs ``tokens`` select, in the tokens' order, each with ``visible_as`` set to the token
    as spelled (so an experiment gets the user's own spelling back); and the tokens that select
    none (see :func:`unmatched_notes`).

    An index token selects the GPU with that driver index; a ``GPU-`` token, the one GPU whose
    UUID starts with it (ignoring case): a prefix that fits several selects none, as it is not
    clear which is meant. The first token that selects nothing ends the list, as in CUDA, and
    every token after it selects nothing either. A MIG token is passed over (the driver's list
    holds whole GPUs only). A GPU selected twice (``0,GPU-<uuid of 0>``) counts once.
    """
    chosen: list[Gpu] = []
    unmatched: list[str] = []
    stopped = False
    for token in tokens:
        found = None if stopped else _select(gpus, token)
        if found is None:
            unmatched.append(token)
            stopped = stopped or not _is_mig(token)
        elif all(found.index != g.index for g in chosen):
            chosen.append(found._replace(visible_as=token))
    return tuple(chosen), tuple(unmatched)


def _select(gpus: Sequence[Gpu], token: str) -> Gpu | None:
    if is_index(token):
        return next((g for g in gpus if g.index == int(token)), None)
    prefix = token.lower()
    fits = [g for g in gpus if g.uuid is not None and g.uuid.lower().startswith(prefix)]
    return fits[0] if len(fits) == 1 else None


def _is_mig(token: str) -> bool:
    return token.startswith("MIG-")


def unmatched_notes(unmatched: Sequence[str], gpus: Sequence[Gpu]) -> list[str]:
    """Why the tokens :func:`restrict` left over select nothing, for the inventory's notes: one
    per MIG token, one for the token that ends the list, one for the tokens CUDA then ignores."""
    notes = []
    for n, token in enumerate(unmatched):
        if _is_mig(token):
            # MIG instances are not listed (only their parent GPU is): pbtrun cannot place on them yet.
            notes.append(f"CUDA_VISIBLE_DEVICES names {token}, a MIG instance, which pbtrun does not place on yet")
            continue
        notes.append(_why_not(token, gpus))
        if n + 1 < len(unmatched):
            notes.append(f"CUDA ignores what follows it in CUDA_VISIBLE_DEVICES ({', '.join(unmatched[n + 1 :])})")
        break
    return notes


def _why_not(token: str, gpus: Sequence[Gpu]) -> str:
    if is_index(token):
        return f"CUDA_VISIBLE_DEVICES names GPU {token}, which the driver does not have"
    fits = sum(1 for g in gpus if g.uuid is not None and g.uuid.lower().startswith(token.lower()))
    if fits > 1:
        return f"CUDA_VISIBLE_DEVICES names {token}, which starts the UUIDs of {fits} GPUs: give more of it"
    return f"CUDA_VISIBLE_DEVICES names {token}, which no GPU of the driver has as UUID"


def without_driver(tokens: Sequence[str]) -> tuple[Gpu, ...]:
    """The GPUs ``tokens`` stand for when no driver can be asked: an index token is that GPU,
    a UUID token is a GPU numbered by its position (or the next number no index token
    takes); their memory is unknown."""
    taken = {int(t) for t in tokens if is_index(t)}
    gpus = []
    for position, token in enumerate(tokens):
        if is_index(token):
            gpus.append(Gpu(index=int(token), uuid=None, visible_as=token))
            continue
        number = position
        while number in taken:  # "1,GPU-ab": GPU 1 is named, so the UUID's GPU is numbered 2
            number += 1
        taken.add(number)
        gpus.append(Gpu(index=number, uuid=token, visible_as=token))
    return tuple(gpus)
