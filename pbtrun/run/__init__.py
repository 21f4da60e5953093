"""The run layer: the scheduling loop and GPU placement. It drives a backend through
:mod:`pbtrun.backends.base` and records every transition through the state layer."""
