"""Model cards: the JSON beside a model's file that says what the model is and how it was measured.

``robust.safetensors`` has ``robust.json``; ``realistic.recipe`` has ``realistic.json``. This
module reads them (one reader, one size limit, for classifiers and priors alike) and holds the
policy that cards decide: which data set a model is of, whether it is a judge, its headline
robustness figure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trav_gui.engine.models.errors import ModelLoadError

__all__ = ["MAX_CARD_BYTES", "card_dataset", "card_path", "check_one_dataset", "is_judge", "read_card",
           "refuse_judges", "robust_headline"]

# A model card is a few kB; a larger file is not one (and is not read whole).
MAX_CARD_BYTES = 1 << 20


def card_path(weights: str | os.PathLike) -> Path:
    """The JSON model card that belongs beside a model's file."""
    return Path(weights).with_suffix(".json")


def read_card(weights: str | os.PathLike, strict: bool = False) -> dict | None:
    """The model card beside ``weights``; None if there is none (or, unless ``strict``, if it is
    not a JSON object of at most 1 MiB: ``strict`` raises :class:`ModelLoadError` then)."""
    path = card_path(weights)
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes, more than a card's {MAX_CARD_BYTES}")
        card = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(card, dict):
            raise ValueError(f"a JSON {type(card).__name__}, not an object")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if strict:
            raise ModelLoadError(f"{path.name}: the model card cannot be read ({exc}); fix it, or delete it "
                                 "and write a new one") from None
        return None
    return card


def card_dataset(card: dict | None) -> str:
    """The data set a card says its model was trained on; ``"mnist"`` for cards before data sets."""
    return str((card or {}).get("dataset") or "mnist")


def check_one_dataset(cards: list[dict]) -> str:
    """The one data set of ``cards``; a ValueError naming each model's data set if they differ.

    A traversal compares models on one image of one data set: a digit classifier has nothing
    to say about a sneaker.
    """
    sets = {card_dataset(c) for c in cards}
    if len(sets) > 1:
        which = ", ".join(f"{c.get('name', '?')} ({card_dataset(c)})" for c in cards)
        raise ValueError(f"these models were trained on different data sets: {which}; "
                         "a run compares models of one data set")
    return sets.pop() if sets else "mnist"


def is_judge(card: dict | None) -> bool:
    """A judge of realism (role ``"judge"``): never traversed, ensembled or used to stop a run."""
    return (card or {}).get("role") == "judge"


def refuse_judges(cards: list[dict]) -> None:
    """ValueError naming any judge among ``cards``: a judge that is traversed judges itself."""
    judges = [c.get("name", "?") for c in cards if is_judge(c)]
    if judges:
        raise ValueError(f"{', '.join(judges)} is a judge of realism (role \"judge\"): it is never "
                         "traversed, so that its verdict stays independent; pick another model")


def robust_headline(card: dict) -> dict | None:
    """The card's strongest robustness figure: the lowest accuracy measured at its main radius.

    The main radius is the first one evaluated (the training ε). When both PGD and the
    stronger APGD worst case were measured there, the APGD figure is the honest one and is
    returned. The dict is the card's entry with ``"short"`` added: a label such as
    ``"PGD+APGD"`` for compact displays. None if the card has no robust evaluation.
    """
    runs = [r for r in ((card.get("evaluation") or {}).get("robust") or [])
            if isinstance(r, dict) and isinstance(r.get("accuracy"), (int, float)) and "eps" in r]
    if not runs:
        return None
    main = [r for r in runs if r["eps"] == runs[0]["eps"]]
    worst = min(main, key=lambda r: r["accuracy"])
    attack = str(worst.get("attack", "attack"))
    return {**worst, "short": "PGD+APGD" if "APGD" in attack else attack.split(",")[0]}
