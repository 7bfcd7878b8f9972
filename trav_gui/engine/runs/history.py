"""The frames of one run of the app so far: growing arrays, so that plots and scrubbing are cheap.

Plain numpy, no Qt: the window appends frames as they arrive and reads whole curves
(``probs[:n, m]``) at redraw time without stacking thousands of frames again.
"""

from __future__ import annotations

import numpy as np

from trav_gui.engine.core.traversal import Frame
from trav_gui.engine.realism import (
    CONFIDENT_PROB,
    confident_point,
    kept_pull,
    most_realistic_of,
)

__all__ = ["RunHistory"]


class RunHistory:
    """Frames 0..n-1 of one run of M models on one image.

    Attributes
    ----------
    n_models : M.
    target : the run's target class.
    image_shape : one frame image's shape: (H, W) grey, (3, H, W) colour.
    num_classes : K.

    Both are taken from the first frame when it differs from what was given.
    """

    def __init__(self, n_models: int, target: int, capacity: int = 256,
                 image_shape: tuple[int, ...] = (28, 28), num_classes: int = 10) -> None:
        self.n_models = n_models
        self.target = int(target)
        self.image_shape = tuple(image_shape)
        self.num_classes = int(num_classes)
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
        self._images = grow(get("_images"), (m, *self.image_shape), np.float32)
        self._probs = grow(get("_probs"), (m, self.num_classes), np.float32)
        self._l2 = grow(get("_l2"), (m,), np.float32)
        self._linf = grow(get("_linf"), (m,), np.float32)
        self._objective = grow(get("_objective"), (m,), np.float32)
        self._grad_norm = grow(get("_grad_norm"), (m,), np.float32)
        self._done = grow(get("_done"), (m,), bool)
        self._steps = grow(get("_steps"), (), np.int64)
        # Realism, when a scorer runs beside the traversal: NaN until known.
        self._judge = grow(get("_judge"), (m, self.num_classes), np.float32)
        self._ratio = grow(get("_ratio"), (m,), np.float32)
        self._nearest = grow(get("_nearest"), (m,), np.int64)
        # Colour worlds: whether the ink added so far keeps the start's hue (1/0), and its grey share.
        self._kept = grow(get("_kept"), (m,), np.float32)
        self._grey = grow(get("_grey"), (m,), np.float32)
        self._judge[self._n:] = np.nan
        self._ratio[self._n:] = np.nan
        self._nearest[self._n:] = -1
        self._kept[self._n:] = np.nan
        self._grey[self._n:] = np.nan

    def __len__(self) -> int:
        return self._n

    def append(self, frame: Frame) -> None:
        """Add the next frame; its arrays must be (M, 1, ...)."""
        if self._n == 0 and (frame.images.shape[2:] != self.image_shape or frame.probs.shape[-1] != self.num_classes):
            self.image_shape, self.num_classes = tuple(frame.images.shape[2:]), int(frame.probs.shape[-1])
            capacity = len(self._steps)
            for key in [k for k in self.__dict__ if k.startswith("_") and isinstance(self.__dict__[k], np.ndarray)
                        and k != "_flip"]:
                del self.__dict__[key]
            self._alloc(capacity)
        if frame.images.shape != (self.n_models, 1, *self.image_shape) or frame.probs.shape[-1] != self.num_classes:
            raise ValueError(f"expected frames of {self.n_models} models on one {self.image_shape} image "
                             f"with {self.num_classes} classes, got images {frame.images.shape}, "
                             f"probs {frame.probs.shape}")
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

    def add_realism(self, indices, realism) -> None:
        """Store the realism (a ``Realism`` of (k, M, ...) arrays) of the frames at ``indices`` (k,)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) != len(realism.nn_ratio):
            raise ValueError(f"{len(indices)} frame indices for realism of {len(realism.nn_ratio)} frames")
        if indices.size and (indices.min() < 0 or indices.max() >= self._n):
            raise ValueError(f"realism for frames {indices.min()}..{indices.max()}, but only {self._n} frames")
        self._judge[indices] = realism.judge_probs
        self._ratio[indices] = realism.nn_ratio
        self._nearest[indices] = realism.nearest
        if realism.colour_kept is not None:
            self._kept[indices] = realism.colour_kept
            self._grey[indices] = realism.grey_share

    # --- views of frames 0..n-1 (read-only) ---------------------------------------------

    @property
    def judge_probs(self) -> np.ndarray:
        """(n, M, K) the judge's class probabilities; NaN where not scored."""
        return self._view(self._judge)

    @property
    def nn_ratio(self) -> np.ndarray:
        """(n, M) distance to the nearest real image of the target ÷ typical; NaN where not scored."""
        return self._view(self._ratio)

    @property
    def nearest(self) -> np.ndarray:
        """(n, M) index of the nearest reference image (-1 where not scored)."""
        return self._view(self._nearest)

    @property
    def colour_kept(self) -> np.ndarray:
        """(n, M) 1 where the ink added since the start keeps its hue, 0 where not; NaN where
        not scored or in grey worlds."""
        return self._view(self._kept)

    @property
    def grey_share(self) -> np.ndarray:
        """(n, M) the share of the added ink that is grey; NaN where unknown."""
        return self._view(self._grey)

    @property
    def has_colour(self) -> bool:
        return self._n > 0 and bool(np.isfinite(self._kept[: self._n]).any())

    @property
    def has_realism(self) -> bool:
        return self._n > 0 and bool(np.isfinite(self._ratio[: self._n]).any())

    def confident_points(self, threshold: float | None = None) -> list[int | None]:
        """Per model, the first step with own p(target) >= threshold (0.9 by default), or None."""
        at = [confident_point(self._probs[: self._n, j], self.target, threshold or CONFIDENT_PROB)
              for j in range(self.n_models)]
        return [None if i is None else int(self._steps[i]) for i in at]

    def most_realistic(self) -> list[int | None]:
        """Per model, the judge-free most realistic step from the confident point on (of the pull
        it ends with: a retry's from its own), or None."""
        out, n = [], self._n
        for j in range(self.n_models):
            i = most_realistic_of(self._probs[:n, j], self._ratio[:n, j], self.target, self._l2[:n, j])
            out.append(None if i is None else int(self._steps[i]))
        return out

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
        """(n, M, H, W) (colour: (n, M, 3, H, W)) float32 in [0, 1]."""
        return self._view(self._images)

    @property
    def probs(self) -> np.ndarray:
        """(n, M, K) float32."""
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

    def restart_steps(self) -> list[int | None]:
        """Per model, the first step at which its trajectory, having moved, is back at its start (a
        recipe's retry: its critic rejected the endpoint; read by :func:`~trav_gui.engine.realism.kept_pull`
        from the perturbation norms); None if never."""
        at = [kept_pull(self._l2[: self._n, j]) for j in range(self.n_models)]
        return [int(self._steps[i]) if i > 0 else None for i in at]

    def start_classes(self) -> list[int]:
        """Per model, the class predicted at step 0."""
        if self._n == 0:
            raise ValueError("no frames yet")
        return [int(c) for c in self._probs[0].argmax(-1)]

    def stacked(self) -> dict[str, np.ndarray]:
        """The same arrays as ``stack_frames`` (T, M, N=1, ...), copies, for export."""
        n = self._n
        realism = {"judge_probs": self._judge[:n, :, None].copy(),
                   "nn_ratio": self._ratio[:n, :, None].copy()} if self.has_realism else {}
        if self.has_realism and self.has_colour:
            realism.update(colour_kept=self._kept[:n, :, None].copy(), grey_share=self._grey[:n, :, None].copy())
        return {
            **realism,
            "images": self._images[:n, :, None].copy(),
            "probs": self._probs[:n, :, None].copy(),
            "l2": self._l2[:n, :, None].copy(),
            "linf": self._linf[:n, :, None].copy(),
            "objective": self._objective[:n, :, None].copy(),
            "grad_norm": self._grad_norm[:n, :, None].copy(),
            "done": self._done[:n, :, None].copy(),
            "step": self._steps[:n].copy(),
        }
