"""The shared library of the load tools: what the maintained benchmarks (loadtest/*.py) and the
tests import. Nothing here is a command (loadtest/README.md)."""
