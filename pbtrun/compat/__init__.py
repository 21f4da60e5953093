"""The old IsaacGymEnvs / Sample Factory launcher: a stand-in for its ``RunDescription`` module and
the import of its run modules into a spec.

``importer`` (``pbtrun import``) ties together ``run_module`` (importing the module, with
``launcher``'s stand-ins where the launcher is not installed), ``description`` (reading its
``RUN_DESCRIPTION``), ``grids`` (recovering each group's grid) and ``writing`` (the TOML text).
"""
