"""Backends: the only code that starts or signals experiments. :mod:`pbtrun.backends.base` is the
seam the scheduler drives; ``local`` (with its ``reaper``) runs experiments as processes on this
machine; ``logrecords`` is the log format every backend writes and ``status``/``logs`` read;
``slurmtext`` reads what Slurm's commands print (pure: the Slurm backend runs them); ``slurmjob``
runs one attempt inside a cluster's job (Slurm's, or a ``template`` queue's)."""
