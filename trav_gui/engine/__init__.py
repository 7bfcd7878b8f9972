"""The Qt-free engine, in wings that import only downward (import-linter contracts in
pyproject.toml check the order; ``tests/test_architecture.py`` checks for cycles):

``output`` (pictures, exports, galleries) → ``runs`` (context, history, run record, replay) →
``realism`` (the judge, references, the scorer) → ``models`` (architectures, cards, weights,
ONNX, priors, recipes, loading, user models, cache) → ``data`` (data sets, preprocessing) |
``core`` (steps, objectives, traversal, attacks, threads) → ``files`` (atomic writes, safe
deletion, hashing).

The GUI, the command line, training and the benchmarks all use this package; it never
imports Qt.
"""
