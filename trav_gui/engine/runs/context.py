"""What one run of the app was started with, fixed for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.models.card import ModelEntry
from trav_gui.engine.runs.history import RunHistory
from trav_gui.engine.runs.record import ModelRef, record_run

__all__ = ["RunContext"]


@dataclass(frozen=True)
class RunContext:
    """Everything a run was started with, fixed for its lifetime.

    Attributes
    ----------
    models : the models' listing entries, in column order.
    image : (28, 28) float32 in [0, 1], the start image (a read-only copy).
    test_index : the shipped test image it came from, or None for a drawing.
    target : the target class.
    config : the run's settings.
    run_id : set when the app starts the run; frames of a run already left are dropped by it.
    """

    models: tuple[ModelEntry, ...]
    image: np.ndarray = field(repr=False)
    test_index: int | None
    target: int
    config: TraversalConfig
    run_id: int = 0

    def __post_init__(self) -> None:
        image = np.array(self.image, dtype=np.float32, copy=True)
        image.flags.writeable = False
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "models", tuple(self.models))

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def record(self, history: RunHistory, sha256: Callable[[ModelEntry], str], extra: Mapping | None = None) -> dict:
        """The run record (:func:`~trav_gui.engine.runs.record.record_run`) of this run with ``history``'s frames."""
        refs = [ModelRef(m.name, sha256(m), None if m.path is None else str(m.path)) for m in self.models]
        return record_run(refs, self.image, self.target, self.config, history.steps, history.probs,
                          history.nn_ratio if history.has_realism else None, self.test_index, extra, history.l2)
