"""Which of the available models replay a run record: matched by the sha256 of their weights.

Qt-free, so that the window and the command line refuse the same records with the same words.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from trav_gui.engine.models.card import ModelEntry
from trav_gui.engine.runs.record import RunRecord

__all__ = ["ReplayError", "match_record_models"]


class ReplayError(ValueError):
    """The record cannot be replayed here; ``title`` is a short heading, the message says why."""

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title = title


def match_record_models(record: RunRecord, entries: Iterable[ModelEntry], sha256: Callable[[ModelEntry], str],
                        max_models: int | None = None, max_steps: int | None = None) -> list[ModelEntry]:
    """The entry of each model the record names, in the record's order.

    Parameters
    ----------
    record : the run record.
    entries : the models available; those whose file cannot be read are skipped.
    sha256 : an entry's weights digest (may raise OSError for a vanished file).
    max_models, max_steps : limits of the caller (the window shows at most 4 columns).

    Raises
    ------
    ReplayError : a model is not available, too many models, a model compared with
        itself, or too many steps.
    """
    by_sha: dict[str, ModelEntry] = {}
    for entry in entries:
        try:
            by_sha.setdefault(sha256(entry), entry)
        except OSError:
            continue
    models: Sequence = record.models
    missing = [m for m in models if m.sha256 not in by_sha]
    if missing:
        names = ", ".join(f"{m.name} (sha256 {m.sha256[:12]}…)" for m in missing)
        raise ReplayError("Models not available",
                          f"This run used {names}, which is not among the listed models. "
                          "Add the same weights with File → Add model… and open the run again.")
    if max_models is not None and len(models) > max_models:
        raise ReplayError("Cannot open run", f"the run compares {len(models)} models; "
                                             f"the window shows at most {max_models}")
    if len({m.sha256 for m in models}) < len(models):
        raise ReplayError("Cannot open run", "the run compares a model with itself; the window "
                                             "shows each model once (replay it with trav-gui traverse)")
    if max_steps is not None and record.config.steps > max_steps:
        raise ReplayError("Cannot open run", f"{record.config.steps} steps: the window keeps at "
                                             f"most {max_steps} (replay it with trav-gui traverse)")
    return [by_sha[m.sha256] for m in models]
