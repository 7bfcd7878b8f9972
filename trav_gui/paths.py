"""Where the app finds its shipped resources, the user's own models and data sets, and the data root."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from platformdirs import user_data_dir

DATA_ROOT_ENV = "TRAV_GUI_DATA"
RESOURCES_ENV = "TRAV_GUI_RESOURCES"
USER_MODELS_ENV = "TRAV_GUI_USER_MODELS"
USER_DATASETS_ENV = "TRAV_GUI_USER_DATASETS"
DEFAULT_DATA_ROOT = Path.home() / ".cache" / "trav_gui" / "data"


def resources_dir() -> Path:
    """The ``resources/`` folder: shipped weights, model cards, recipes, priors, test sets.

    ``$TRAV_GUI_RESOURCES`` if set; else the repository's ``resources/`` beside the source tree
    (a clone, or an editable install of one); else the copy inside the installed package
    (``pip install .``, a wheel, pipx), where it ships as ``trav_gui/resources``.
    """
    override = os.environ.get(RESOURCES_ENV)
    if override:
        return Path(override)
    beside = Path(__file__).resolve().parent.parent / "resources"
    if (beside / "models").is_dir():
        return beside
    return Path(str(files("trav_gui").joinpath("resources")))


def models_dir() -> Path:
    return resources_dir() / "models"


def priors_dir() -> Path:
    return resources_dir() / "priors"


def user_models_dir() -> Path:
    """The user models folder (``trav-gui models add``, File → Add model…): ``$TRAV_GUI_USER_MODELS``,
    else the platform's user data folder (``~/.local/share/trav-gui/models`` on Linux)."""
    override = os.environ.get(USER_MODELS_ENV)
    if override:
        return Path(override).expanduser()
    return Path(user_data_dir("trav-gui", appauthor=False)) / "models"


def user_datasets_dir() -> Path:
    """The user data sets folder (``trav-gui datasets add``): ``$TRAV_GUI_USER_DATASETS``, else the
    platform's user data folder (``~/.local/share/trav-gui/datasets`` on Linux)."""
    override = os.environ.get(USER_DATASETS_ENV)
    if override:
        return Path(override).expanduser()
    return Path(user_data_dir("trav-gui", appauthor=False)) / "datasets"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The MNIST data root: ``explicit``, else ``$TRAV_GUI_DATA``, else ``~/.cache/trav_gui/data``.

    torchvision's layout is used below it (``<root>/MNIST/raw/...``).
    """
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA_ROOT
