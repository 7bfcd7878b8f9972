"""One run of the app: what it was started with (:class:`RunContext`) and the frames so far
(:class:`RunHistory`, growing arrays so that plots and scrubbing are cheap).

Plain numpy, no Qt: the window appends frames as they arrive and reads whole curves
(``probs[:n, m]``) at redraw time without stacking thousands of frames again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from trav_gui.engine.traversal import Frame, TraversalConfig

__all__ = ["RunContext", "RunHistory"]


@dataclass(frozen=True)
class RunContext:
    """Everything a run was started with, fixed for its lifetime.

    Attributes
    ----------
    cards : the models' cards, in column order (``name``, ``path``, ...).
    image : (28, 28) float32 in [0, 1], the start image (a read-only copy).
    mnist_index : the shipped test image it came from, or None for a drawing.
    target : the target class.
    config : the run's settings.
    run_id : set by :meth:`RunController.start`.
    """

    cards: tuple[dict, ...]
    image: np.ndarray = field(repr=False)
    mnist_index: int | None
    target: int
    config: TraversalConfig
    run_id: int = 0

    def __post_init__(self) -> None:
        image = np.array(self.image, dtype=np.float32, copy=True)
        image.flags.writeable = False
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "cards", tuple(self.cards))

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.cards]

    def record(self, history: "RunHistory", sha256: Callable[[Mapping], str], extra: Mapping | None = None) -> dict:
        """The run record (see :mod:`trav_gui.engine.export`) of this run with ``history``'s frames."""
        from trav_gui.engine.export import ModelRef, build_run_record

        refs = [ModelRef(c["name"], sha256(c), c.get("path")) for c in self.cards]
        extra = {"steps_taken": int(history.steps[-1]),
                 "flip_step": dict(zip(self.names, history.flip_steps())), **(extra or {})}
        return build_run_record(refs, self.image, self.target, self.config,
                                mnist_index=self.mnist_index, extra=extra)


class RunHistory:
    """Frames 0..n-1 of one run of M models on one image.

    Attributes
    ----------
    n_models : M.
    target : the run's target class.
    """

    def __init__(self, n_models: int, target: int, capacity: int = 256) -> None:
        self.n_models = n_models
        self.target = int(target)
        self._n = 0
        self._alloc(max(2, capacity))
        self._flip = np.full(n_models, -1, dtype=np.int64)

    def _alloc(self, capacity: int) -> None:
        m = self.n_models

        def grow(old: np.ndarray | None, shape: tuple, dtype) -> np.ndarray:
            new = np.zeros((capacity, *shape), dtype)
            if old is not None:
                new[: self._n] = old[: self._n]
            return new

        get = self.__dict__.get
        self._images = grow(get("_images"), (m, 28, 28), np.float32)
        self._probs = grow(get("_probs"), (m, 10), np.float32)
        self._l2 = grow(get("_l2"), (m,), np.float32)
        self._linf = grow(get("_linf"), (m,), np.float32)
        self._objective = grow(get("_objective"), (m,), np.float32)
        self._grad_norm = grow(get("_grad_norm"), (m,), np.float32)
        self._done = grow(get("_done"), (m,), bool)
        self._steps = grow(get("_steps"), (), np.int64)

    def __len__(self) -> int:
        return self._n

    def append(self, frame: Frame) -> None:
        """Add the next frame; its arrays must be (M, 1, ...)."""
        if frame.images.shape[:2] != (self.n_models, 1):
            raise ValueError(f"expected frames of {self.n_models} models on one image, "
                             f"got images {frame.images.shape}")
        if self._n == len(self._steps):
            self._alloc(2 * len(self._steps))
        i = self._n
        self._images[i] = frame.images[:, 0]
        self._probs[i] = frame.probs[:, 0]
        self._l2[i] = frame.l2[:, 0]
        self._linf[i] = frame.linf[:, 0]
        self._objective[i] = frame.objective[:, 0]
        self._grad_norm[i] = frame.grad_norm[:, 0]
        self._done[i] = frame.done[:, 0]
        self._steps[i] = frame.step
        hit = (frame.probs[:, 0].argmax(-1) == self.target) & (self._flip < 0)
        self._flip[hit] = frame.step
        self._n += 1

    # --- views of frames 0..n-1 (read-only) ---------------------------------------------

    def _view(self, a: np.ndarray) -> np.ndarray:
        v = a[: self._n]
        v.flags.writeable = False
        return v

    @property
    def steps(self) -> np.ndarray:
        """(n,) int step numbers."""
        return self._view(self._steps)

    @property
    def images(self) -> np.ndarray:
        """(n, M, 28, 28) float32 in [0, 1]."""
        return self._view(self._images)

    @property
    def probs(self) -> np.ndarray:
        """(n, M, 10) float32."""
        return self._view(self._probs)

    @property
    def l2(self) -> np.ndarray:
        return self._view(self._l2)

    @property
    def linf(self) -> np.ndarray:
        return self._view(self._linf)

    @property
    def objective(self) -> np.ndarray:
        return self._view(self._objective)

    def flip_steps(self) -> list[int | None]:
        """Per model, the first step whose prediction is the target (None if never)."""
        return [int(s) if s >= 0 else None for s in self._flip]

    def start_classes(self) -> list[int]:
        """Per model, the class predicted at step 0."""
        if self._n == 0:
            raise ValueError("no frames yet")
        return [int(c) for c in self._probs[0].argmax(-1)]

    def stacked(self) -> dict[str, np.ndarray]:
        """The same arrays as ``stack_frames`` (T, M, N=1, ...), copies, for export."""
        n = self._n
        return {
            "images": self._images[:n, :, None].copy(),
            "probs": self._probs[:n, :, None].copy(),
            "l2": self._l2[:n, :, None].copy(),
            "linf": self._linf[:n, :, None].copy(),
            "objective": self._objective[:n, :, None].copy(),
            "grad_norm": self._grad_norm[:n, :, None].copy(),
            "done": self._done[:n, :, None].copy(),
            "step": self._steps[:n].copy(),
        }
