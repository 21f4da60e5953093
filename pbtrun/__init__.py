"""pbtrun: declarative experiment sweeps with a scheduler that never loses track."""

__version__ = "0.2.0.dev0"  # format 2 of the state: a sweep says which pbtrun wrote it
