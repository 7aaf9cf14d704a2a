"""Suites: a grid of runs from a YAML file (grid) and the executors that run it (execute)."""
