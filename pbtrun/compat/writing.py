"""Writing the imported run as ``sweep.toml`` text a person reads, keeps and edits.

Every key and scalar is rendered by ``tomli_w``; the layout is pbtrun's: arrays stay on one line
where they fit (a grid's shape shows), longer ones take a line per item, and a header says where
the spec came from and how to check it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomli_w

from pbtrun.compat.description import ImportedRun
from pbtrun.compat.grids import combinations_table

_WIDTH = 100  # longer arrays are written one item per line, longer inline tables as sub-tables


def header(label: str, run: ImportedRun) -> str:
    """The comment that opens the spec: where it came from, what it promises, how to check it."""
    lines = [
        f"# Imported by `pbtrun import` from {label}.",
        "# pbtrun compiles from it the experiments the old launcher's generate_experiments() gave:",
        "# same names, argv, env and order. The old launcher's --train_dir is `train_dir` here",
        '# (default "train_dir") or `pbtrun up --train-dir`. Check: pbtrun plan <this file>',
    ]
    for attr in ("experiment_arg_name", "experiment_dir_arg_name"):
        if not getattr(run, attr):
            lines.append(f'# Note: {attr} is "": the old launcher still passed "=<value>"; pbtrun passes nothing.')
    return "\n".join(lines) + "\n\n"


def document(run: ImportedRun, label: str) -> dict[str, Any]:
    """The spec as TOML data: a shared command at the top level, each group's parameters as a grid,
    a list or a repeat."""
    doc: dict[str, Any] = {"name": run.name}
    commands = [g.command for g in run.groups]
    shared = all(c == commands[0] for c in commands)
    if shared:
        doc["command"] = commands[0]
    doc |= {
        "param_prefix": run.param_prefix,
        "experiment_arg_name": run.experiment_arg_name,
        "experiment_dir_arg_name": run.experiment_dir_arg_name,
        "customize_experiment_name": run.customize_experiment_name,
        "experiment_suffix": run.experiment_suffix,
    }
    tables = []
    for group in run.groups:
        table: dict[str, Any] = {"name": group.name}
        if not shared:
            table["command"] = group.command
        table |= combinations_table(group, label)
        if group.env:
            table["env"] = group.env
        tables.append(table)
    doc["experiments"] = tables
    return doc


def dumps(doc: dict[str, Any]) -> str:
    """The document as TOML: every key and scalar rendered by tomli_w, arrays kept on one line
    where they fit (tomli_w puts each item on its own line, which buries a grid's shape)."""
    top = {key: value for key, value in doc.items() if key != "experiments"}
    lines = _body(top, "")
    for table in doc["experiments"]:
        lines += ["", "[[experiments]]", *_body(table, "experiments")]
    return "\n".join(lines) + "\n"


def _body(table: Mapping[str, Any], name: str) -> list[str]:
    lines: list[str] = []
    sub_tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) and len(f"{_key(key)} = {_literal(value)}") > _WIDTH:
            sub_tables.append((key, value))
        else:
            lines.append(_assignment(key, value))
    for key, value in sub_tables:
        lines += ["", f"[{name}.{_key(key)}]", *(_assignment(k, v) for k, v in value.items())]
    return lines


def _assignment(key: str, value: Any) -> str:
    line = f"{_key(key)} = {_literal(value)}"
    if len(line) <= _WIDTH or not isinstance(value, list) or not value:
        return line
    return f"{_key(key)} = [\n" + "".join(f"    {_literal(item)},\n" for item in value) + "]"


def _key(key: str) -> str:
    return tomli_w.dumps({key: 0})[: -len(" = 0\n")]


def _literal(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_literal(v)}" for k, v in value.items()) + " }" if value else "{}"
    return tomli_w.dumps({"v": value})[len("v = ") : -1]
