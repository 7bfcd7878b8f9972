"""Watch neural networks traverse an image from one class to another.

``trav_gui.traverse(model, image, target)`` and ``trav_gui.show(models={...})`` are the
Python API (:mod:`trav_gui.api`). They are imported on first use, so ``import trav_gui``
loads neither torch nor Qt.
"""

__version__ = "0.1.0"

__all__ = ["TraversalResult", "__version__", "show", "traverse"]

_API = ("TraversalResult", "show", "traverse")


def __getattr__(name: str):
    if name in _API:
        from importlib import import_module

        return getattr(import_module("trav_gui.api"), name)
    raise AttributeError(f"module 'trav_gui' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
