"""The spec layer: reading a sweep's TOML, naming and expanding its experiments. Knows nothing of
the state file, backends or the terminal."""
