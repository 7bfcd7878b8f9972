"""The models wing: classifiers, their cards and weights, ONNX graphs, priors, recipes, the user's
models folder and the cache of loaded models.

Import direction, lowest first (an import-linter ``layers`` contract in pyproject.toml checks it):
``errors`` → ``architectures`` → ``card`` → ``weights`` | ``conventions`` | ``onnx_ops`` →
``recipes`` | ``priors`` | ``onnx_model`` | ``accuracy`` → ``loading`` (the one place that
dispatches by file suffix) → ``user_models`` | ``cache``.
"""
