"""The old IsaacGymEnvs / Sample Factory launcher: a stand-in for its ``RunDescription`` module and
the import of its run modules into a spec."""
