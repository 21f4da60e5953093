"""Compiling a validated spec into its experiments: names, ids, argv and env, in launch order.

Names and ids come from :mod:`pbtrun.spec.naming`, argv and env from the group's
:class:`~pbtrun.spec.argstyle.Layout`. Pure, like the rest of the spec layer: nothing here
touches the train dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from pbtrun.errors import SpecError
from pbtrun.spec import argstyle
from pbtrun.spec.model import ExperimentSpec, GroupSpec, Spec
from pbtrun.spec.naming import MAX_NAME_BYTES, canonical_json, experiment_name, id_from_json, shorthands
from pbtrun.spec.positions import SpecSource


def expand(spec: Spec, train_dir: str | None = None) -> list[ExperimentSpec]:
    """Compile a spec into experiments, in the order they are written.

    ``train_dir`` overrides the spec's (``--train-dir``); it is passed to the experiments as
    written, relative paths staying relative to the directory the sweep runs in.
    """
    train_dir = spec.train_dir if train_dir is None else train_dir
    experiments = [e for i, g in enumerate(spec.groups) for e in _expand_group(spec, g, i, train_dir)]
    _check_unique_names(spec, experiments)
    if spec.randomize:  # launch order only: names and ids stay those of the written order
        import random  # here: only randomized specs need it

        random.Random(spec.random_seed).shuffle(experiments)
    return experiments


def _expand_group(spec: Spec, group: GroupSpec, i: int, train_dir: str) -> Iterator[ExperimentSpec]:
    sweep_dir = os.path.join(train_dir, spec.name)
    group_dir = os.path.join(sweep_dir, f"{group.name}_{spec.experiment_suffix}")
    layout = argstyle.Layout(
        group.argv,
        {**spec.env, **group.env},
        (spec.args, spec.param_prefix, spec.experiment_arg_name, spec.experiment_dir_arg_name),
        sweep_dir,
        group_dir,
    )
    occurrences: dict[str, int] = {}
    shorts: dict[tuple[str, ...], list[str]] = {}  # shorthands by parameter names
    group_json = canonical_json(group.name)
    for index, params in enumerate(group.combinations):
        names = tuple(params)
        if names not in shorts:
            shorts[names] = shorthands(names)
        name = experiment_name(group.name, index, params, spec.customize_experiment_name, shorts[names])
        if len(name) > MAX_NAME_BYTES // 4 and len(name.encode()) > MAX_NAME_BYTES:
            raise _too_long(spec, i, name)
        argv, name_arg, env = layout.render(name, params)
        params_json = canonical_json(params)  # counts repeats, and makes the id
        occurrence = occurrences.get(params_json, 0)
        occurrences[params_json] = occurrence + 1
        yield ExperimentSpec(
            id=id_from_json(group_json, params_json, occurrence),
            group=group.name,
            index=index,
            name=name,
            argv=argv,
            env=env,
            params=params,
            name_arg=name_arg,
            layout=layout,
            max_retries=group.max_retries if group.max_retries is not None else spec.max_retries,
            timeout_min=group.timeout_min if group.timeout_min is not None else spec.timeout_min,
            gpus_per_experiment=group.gpus_per_experiment,
        )


def _too_long(spec: Spec, i: int, name: str) -> SpecError:
    """An experiment name programs could not make a directory of (``--experiment`` names one)."""
    return SpecSource(spec.path, spec.text).error(
        ("experiments", i, "name"),
        f"the experiment name {name[:60]}... has {len(name.encode()):,} bytes; a name may have at most "
        f"{MAX_NAME_BYTES} (a file name may have 255, and programs make directories of it). Shorten the "
        "group or parameter names or values, or set customize_experiment_name = false (names are then "
        "NN_<group>).",
    )


def _check_unique_names(spec: Spec, experiments: Sequence[ExperimentSpec]) -> None:
    seen: dict[str, ExperimentSpec] = {}
    for exp in experiments:
        other = seen.setdefault(exp.name, exp)
        if other is not exp:
            raise SpecError(
                f"{spec.path}: experiments of groups {other.group!r} and {exp.group!r} would both be "
                f"named {exp.name!r}; rename one of the groups."
            )
