"""The state layer: the sweep's records and their transitions, the JSON codec and its format
migrations, and the files that hold them (atomic writes, journal, locks). Knows no backend."""
