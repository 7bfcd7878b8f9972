"""The Qt-free engine: models, steps, objectives, traversal, data and preprocessing.

The GUI, the command line, training and the benchmarks all use this package; it never
imports Qt (an import-linter contract in pyproject.toml checks that).
"""
