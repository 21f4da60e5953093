"""pbtrun: declarative experiment sweeps with a scheduler that never loses track."""

__version__ = "0.1.0"
