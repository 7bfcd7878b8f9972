"""The errors of the models wing; each message says what is wrong and what to do."""

from __future__ import annotations

__all__ = ["ModelLoadError", "PriorLoadError", "RecipeError", "UserModelError"]


class ModelLoadError(ValueError):
    """A model file could not be loaded; the message says why and what to do."""


class PriorLoadError(ValueError):
    """A prior could not be loaded; the message says why."""


class RecipeError(ValueError):
    """A recipe is invalid or names something it may not use; the message says which."""


class UserModelError(ValueError):
    """A user-model operation was refused (bad name, name taken, nothing to remove); the message says why."""
