"""The user's side: the command line, the live view, tables and logs. Reads the state; runs a
sweep only through :mod:`pbtrun.run`."""
