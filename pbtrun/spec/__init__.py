"""The spec layer: reading a sweep's TOML, naming and expanding its experiments. Knows nothing of
the state file, backends or the terminal.

``reading`` (load and parse: TOML to a ``Spec``) checks the top level itself and the tables with
``scheduler_table`` and ``groups`` (its ``parameters``: grids and lists), every key through
``keys``, every error placed at its line by ``positions``; ``expansion`` compiles a ``Spec`` into
``ExperimentSpec``s with ``naming``, ``argstyle`` and ``placeholders``; ``model`` holds the value
types. ``nesting`` bounds how deep values nest; ``argdiff`` words a change of argv and env.
"""
