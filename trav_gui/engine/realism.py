"""How real is a traversed image? Judge-based and judge-free measures, one module for all.

Used by the app (live, in the worker thread), the command line (every export) and the
benchmarks, so that every figure means the same thing everywhere.

- **Judge**: a shipped model with the role ``"judge"`` (``load_model("judge")`` for MNIST,
  ``"fashion-judge"`` for Fashion-MNIST, both L2-robust WideCNNs; ``judge-standard`` and
  ``fashion-judge-standard`` are standard second opinions): another architecture and seed than
  anything that is traversed. It is never traversed, ensembled or used by a stopping rule: a judge that agrees
  the image is the target says its meaning changed, not only one network's decision.
- **Nearest real image** (judge-free): the L2 distance of an image to the nearest reference
  training image of the target class, divided by what is *typical* for that class (the median
  such distance of the real held-out test images). 1 is as close to real images as real
  images are; a real test image scores about 1 by construction. The reference images ship in
  ``resources/realism_<dataset>.npz`` (built by ``python -m training.build_realism_reference``).
- **Confident point**: the first step where the traversed model's own p(target) >= 0.9;
  **flip**: the first step it predicts the target.
- **Most realistic** (judge-free): from the confident point on, the step with the lowest
  nearest-real ratio (after a recipe's retry, from the retry's own confident point on).
- **Success** at a step: the judge predicts the target and the ratio is within the real test
  images' 90th percentile (real images succeed about 90 % of the time: the ceiling).
- **Held-out ratio** (:func:`held_out_reference`): the same ratio against real *test* images
  the traversal never saw, so that a prior trained on the training set cannot win by
  reproducing training images.
- **Noise growth** (:func:`noise_growth`): the ratio at the last step over the ratio at the
  confident point; above 1, the image drifts away from real images once the model is sure.
- **SSIM to the start** (:func:`ssim`): how much of the start's structure is left, so that a
  method that throws the start away and draws a prototype shows.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from trav_gui.engine.data import colored
from trav_gui.engine.data.datasets import (
    COLORED_MNIST,
    DEFAULT_DATASET,
    FASHION_MNIST,
    MNIST,
    get_dataset,
    realism_reference_path,
    stored_shape,
    test_set,
    user_judge_path,
)
from trav_gui.engine.data.preprocess import shift_images
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.models.loading import load_model

__all__ = [
    "CONFIDENT_PROB",
    "JUDGES",
    "Realism",
    "Scorers",
    "RealismScorer",
    "ReferenceSet",
    "ReferenceUnavailableError",
    "confident_point",
    "flip_step",
    "held_out_reference",
    "judge_name",
    "noise_growth",
    "kept_pull",
    "most_realistic",
    "most_realistic_of",
    "reference_set",
    "ssim",
    "summary",
]

CONFIDENT_PROB = 0.9
JUDGES = {MNIST: "judge", FASHION_MNIST: "fashion-judge", COLORED_MNIST: "colored-judge"}


class ReferenceUnavailableError(ValueError):
    """The shipped reference images of a data set are missing or corrupt."""


def judge_name(dataset: str | None = None) -> str:
    """The judge of ``dataset`` for :func:`~trav_gui.engine.models.load_model`: a shipped judge's
    name, or the path of a user set's own judge; a ValueError (saying how to train one) without."""
    ds = get_dataset(dataset)
    if ds.name in JUDGES:
        return JUDGES[ds.name]
    own = user_judge_path(ds)
    if own is not None and own.is_file():
        return str(own)
    raise ValueError(f"{ds.title} has no judge, so its realism is not measured; train one with python -m "
                     f"training.train --dataset {ds.name} --kind robust --arch wide_cnn --judge")


def confident_point(probs: np.ndarray, target: int, threshold: float = CONFIDENT_PROB) -> int | None:
    """Index of the first row of ``probs`` (T, C) whose p(target) >= ``threshold``; None if none."""
    hits = np.flatnonzero(np.asarray(probs)[:, target] >= threshold)
    return int(hits[0]) if hits.size else None


def flip_step(probs: np.ndarray, target: int) -> int | None:
    """Index of the first row of ``probs`` (T, C) whose most probable class is ``target``."""
    hits = np.flatnonzero(np.asarray(probs).argmax(-1) == target)
    return int(hits[0]) if hits.size else None


def most_realistic(nn_ratio: np.ndarray, start: int | None) -> int | None:
    """From index ``start`` (the confident point) on, the index of the lowest finite ratio."""
    if start is None:
        return None
    tail = np.asarray(nn_ratio, dtype=np.float64)[start:]
    if not np.isfinite(tail).any():
        return None
    return start + int(np.nanargmin(np.where(np.isfinite(tail), tail, np.nan)))


def kept_pull(l2: np.ndarray | None) -> int:
    """Index of the frame where the pull a trajectory ends with starts: 0, or where a recipe's retry
    sent it back to its start (the first frame at L2 distance 0 after one that moved)."""
    if l2 is None:
        return 0
    l2 = np.asarray(l2)
    moved = np.flatnonzero(l2 > 0)
    if not moved.size:
        return 0
    back = np.flatnonzero(l2[moved[0]:] == 0)
    return int(moved[0] + back[0]) if back.size else 0


def most_realistic_of(probs: np.ndarray, nn_ratio: np.ndarray, target: int,
                      l2: np.ndarray | None = None) -> int | None:
    """The most realistic frame of one trajectory (``probs`` (T, C), ``nn_ratio`` (T,)), searched from
    the confident point of the pull it ends with: with ``l2`` (T,) given, a retry's frames are searched
    from the retry's own confident point, so that its fog, far from the first pull's, is never marked."""
    k = kept_pull(l2)
    at = confident_point(np.asarray(probs)[k:], target)
    return None if at is None else most_realistic(nn_ratio, k + at)


def summary(probs: np.ndarray, nn_ratio: np.ndarray | None, steps: np.ndarray, target: int,
            l2: np.ndarray | None = None) -> dict:
    """The run record's realism fields of one model's trajectory: the step numbers of the flip,
    the confident point and the most realistic frame (None where there is none; with ``l2``, of the
    pull the trajectory ends with: :func:`most_realistic_of`)."""
    def step_of(i: int | None) -> int | None:
        return None if i is None else int(steps[i])

    confident = confident_point(probs, target)
    best = most_realistic_of(probs, nn_ratio, target, l2) if nn_ratio is not None else None
    return {"flip_step": step_of(flip_step(probs, target)), "confident_step": step_of(confident),
            "confident_prob": CONFIDENT_PROB, "most_realistic_step": step_of(best)}


@dataclass(frozen=True)
class ReferenceSet:
    """Real training images per class and what is typical for each class.

    Attributes
    ----------
    images : (R, C·H·W) float32 in [0, 1], the reference training images, flat.
    labels : (R,) int.
    typical : (K,) the median nearest-reference distance of real test images of each class.
    p90 : (K,) the 90th percentile of the real test images' ratio (distance / typical).

    Images handed in are the data set's: (..., H, W) for grey sets, (..., 3, H, W) for colour.
    """

    dataset: str
    images: np.ndarray
    labels: np.ndarray
    typical: np.ndarray
    p90: np.ndarray

    def _bank(self, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The reference images of ``target`` (indices, pixels, squared norms), computed once."""
        cache = self.__dict__.setdefault("_banks", {})
        if target not in cache:
            idx = np.flatnonzero(self.labels == target)
            bank = np.ascontiguousarray(self.images[idx])
            cache[target] = (idx, bank, (bank * bank).sum(1))
        return cache[target]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One image's shape as frames hold it: (H, W) grey, (3, H, W) colour."""
        return stored_shape(get_dataset(self.dataset))

    def nearest(self, images: np.ndarray, target: int, offset: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        """Per image (..., *image_shape): the ratio to the typical distance, and the nearest
        reference's index, each (...).

        ``offset`` (dy, dx): the images were moved that far from where the data set's images sit
        (a start shifted on purpose). Each is then also compared with the references at its own
        offset (the image moved back), and the nearer of the two counts: a well-formed digit is
        not called unreal for where it stands."""
        if tuple(offset) != (0, 0):
            here = self.nearest(images, target)
            back = self.nearest(shift_images(np.asarray(images, np.float32), -int(offset[0]), -int(offset[1])), target)
            use_back = back[0] < here[0]
            return np.where(use_back, back[0], here[0]), np.where(use_back, back[1], here[1])
        images = np.asarray(images, np.float32)
        lead = images.shape[:images.ndim - len(self.image_shape)]
        x = images.reshape(-1, self.images.shape[1])
        idx, bank, bank_sq = self._bank(int(target))
        d2 = (x * x).sum(1)[:, None] - 2.0 * x @ bank.T + bank_sq[None]
        best = d2.argmin(1)
        dist = np.sqrt(np.maximum(d2[np.arange(len(x)), best], 0.0))
        return (dist / self.typical[target]).astype(np.float32).reshape(lead), idx[best].reshape(lead)

    def image(self, index: int) -> np.ndarray:
        """Reference image ``index`` as (H, W) (colour: (3, H, W)) float32 in [0, 1]."""
        return self.images[index].reshape(self.image_shape)


def build_reference(dataset: str, bank: np.ndarray, bank_labels: np.ndarray, real: np.ndarray,
                    real_labels: np.ndarray) -> ReferenceSet:
    """A :class:`ReferenceSet` of ``bank`` images (R, *image shape) in [0, 1], with what is typical
    measured on other ``real`` images: per class the median distance of a real image to its
    nearest bank image of its class, and the 90th percentile of distance / median."""
    k = get_dataset(dataset).num_classes
    flat = np.ascontiguousarray(np.asarray(bank, np.float32).reshape(len(bank), -1))
    flat.flags.writeable = False
    ref = ReferenceSet(dataset, flat, np.asarray(bank_labels, np.int64), np.ones(k), np.ones(k))
    typical, p90 = np.zeros(k), np.zeros(k)
    for c in range(k):
        sel = np.asarray(real)[np.asarray(real_labels) == c]
        dist, _ = ref.nearest(sel, c)  # ratio to a typical of 1: the distance itself
        typical[c] = np.median(dist)
        p90[c] = np.percentile(dist / typical[c], 90)
    return ReferenceSet(dataset, flat, ref.labels, typical, p90)


@lru_cache(maxsize=4)
def held_out_reference(dataset: str | None = None, exclude: int = 1000) -> ReferenceSet:
    """Nearest-real measures against the shipped *test* images from index ``2 * exclude`` on,
    with what is typical measured on test images ``exclude`` to ``2 * exclude``; the first
    ``exclude`` (the benchmark's starts) are in neither."""
    images, labels = test_set(dataset)
    x = images.astype(np.float32) / 255.0
    return build_reference(get_dataset(dataset).name, x[2 * exclude:], labels[2 * exclude:],
                           x[exclude: 2 * exclude], labels[exclude: 2 * exclude])


def noise_growth(ratio_last: np.ndarray, ratio_confident: np.ndarray) -> np.ndarray:
    """Per trajectory: the nearest-real ratio at the last step over that at the confident point."""
    return np.asarray(ratio_last, np.float64) / np.asarray(ratio_confident, np.float64)


def _gaussian_window(size: int = 7, sigma: float = 1.5) -> np.ndarray:
    g = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def ssim(a: np.ndarray, b: np.ndarray, channels: int = 1) -> np.ndarray:
    """Structural similarity (Wang et al. 2004; 7×7 Gaussian window, σ 1.5, data range 1) of
    images ``a`` and ``b`` (..., H, W) in [0, 1], one value per image pair: 1 for identical
    images, near 0 for unrelated ones. Colour images: pass ``channels=3`` with (..., 3, H, W);
    the value is the mean over the channels' SSIM maps."""
    a = torch.as_tensor(np.asarray(a, np.float32))
    b = torch.as_tensor(np.asarray(b, np.float32))
    dims = 2 if channels == 1 else 3
    full = torch.broadcast_shapes(a.shape, b.shape)
    lead, image = full[:-dims], full[-dims:]
    a = a.expand(full).reshape(-1, 1, *image[-2:])
    b = b.expand(full).reshape(-1, 1, *image[-2:])
    w = torch.as_tensor(_gaussian_window(), dtype=torch.float32)[None, None]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, w)  # valid windows only, as scikit-image does

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean((1, 2, 3)).reshape(-1, channels).mean(1).numpy().reshape(lead)


@lru_cache(maxsize=4)
def reference_set(dataset: str | None = None) -> ReferenceSet:
    """The shipped reference images of ``dataset`` (loaded once)."""
    ds = get_dataset(dataset)
    path = realism_reference_path(ds)
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels, typical, p90 = f["images"], f["labels"], f["typical"], f["p90"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ReferenceUnavailableError(f"{path}: cannot read the reference images ({exc}); rebuild them "
                                        "with python -m training.build_realism_reference") from exc
    k, shape = ds.num_classes, stored_shape(ds)
    if (images.shape[1:] != shape or images.dtype != np.uint8
            or labels.shape != images.shape[:1] or typical.shape != (k,) or p90.shape != (k,)
            or not set(range(k)) <= set(labels.tolist()) or not (typical > 0).all()):
        raise ReferenceUnavailableError(f"{path}: not a reference set of {ds.title} "
                                        f"({'x'.join(map(str, ds.shape))} images of {k} classes)")
    flat = (images.reshape(len(images), -1).astype(np.float32) / 255.0)
    flat.flags.writeable = False
    return ReferenceSet(ds.name, flat, labels.astype(np.int64), typical.astype(np.float64), p90.astype(np.float64))


@dataclass(frozen=True)
class Realism:
    """Realism of frames: ``judge_probs`` (..., K), ``nn_ratio`` (...), ``nearest`` (...) reference
    indices; in colour worlds, given the start, also ``colour_kept`` (...) float (1 the ink added
    since the start keeps its hue, 0 it does not, NaN nothing added yet) and ``grey_share`` (...)
    of that ink (see :func:`~trav_gui.engine.data.colored.colour_kept`), else None."""

    judge_probs: np.ndarray
    nn_ratio: np.ndarray
    nearest: np.ndarray
    colour_kept: np.ndarray | None = None
    grey_share: np.ndarray | None = None


class RealismScorer:
    """Scores images toward a target with a judge and the reference images of one data set.

    Parameters
    ----------
    judge : the judge model (eval mode), or None to load the shipped judge of ``dataset``.
    dataset : the data set of the images.
    device : where the judge runs.
    """

    def __init__(self, judge: torch.nn.Module | None = None, dataset: str = DEFAULT_DATASET,
                 device: str | torch.device = "cpu") -> None:
        self.dataset = get_dataset(dataset).name
        self.reference = reference_set(self.dataset)
        self.device = torch.device(device)
        self.judge = judge if judge is not None else load_model(judge_name(self.dataset), device=self.device)

    def score(self, images: np.ndarray, target: int, start: np.ndarray | None = None) -> Realism:
        """Judge probabilities and nearest-real ratio of ``images`` (..., *image shape) toward ``target``.

        One batched judge call for all images: cheap enough to run on every frame.
        """
        images = np.asarray(images, np.float32)
        ratio, nearest = self.reference.nearest(images, target)
        return Realism(self.judge_probs(images), ratio, nearest, *self.colour(images, start))

    def colour(self, images: np.ndarray, start: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """In a colour world: whether the ink each image added since ``start`` (3, H, W) keeps
        the start's hue (1, 0, or NaN when nothing was added), and the share of it that is grey,
        each (...); (None, None) in grey worlds or without a start."""
        if start is None or not get_dataset(self.dataset).is_colour:
            return None, None
        kept, grey = colored.colour_kept(images, start)
        # 1 kept, 0 changed, NaN where no ink was added yet (nothing to judge).
        return np.where(np.isfinite(grey), kept, np.nan).astype(np.float32), grey.astype(np.float32)

    def judge_probs(self, images: np.ndarray) -> np.ndarray:
        """The judge's class probabilities (..., K) of ``images`` (..., *image shape), one batched call."""
        images = np.asarray(images, np.float32)
        ds = get_dataset(self.dataset)
        lead = images.shape[:images.ndim - len(self.reference.image_shape)]
        with torch.no_grad():
            x = torch.from_numpy(np.array(images, copy=True)).reshape(-1, *ds.shape).to(self.device)
            probs = torch.softmax(self.judge(x), -1).float().cpu().numpy()
        return probs.reshape(*lead, probs.shape[-1])

    def fill_judge(self, arrays: dict) -> int:
        """Judge the frames of export ``arrays`` that were not judged live (NaN rows of
        ``judge_probs`` (T, M, N, K)) in place; the number of frames judged."""
        probs = arrays.get("judge_probs")
        if probs is None:
            return 0
        missing = ~np.isfinite(probs[..., 0])
        if missing.any():
            probs[missing] = self.judge_probs(np.asarray(arrays["images"])[missing])
        return int(missing.sum())

    def sampled(self, images: np.ndarray, target: int, start: np.ndarray | None = None) -> Realism:
        """Realism of frames (k, M, *image shape) for a live view: the nearest-real ratio of every
        frame, the judge only on the newest (the others NaN). The judge costs about as much as
        a traversal step; this keeps the cost of watching it live to a few per cent."""
        images = np.asarray(images, np.float32)
        ratio, nearest = self.reference.nearest(images, target)
        probs = np.full((*ratio.shape, get_dataset(self.dataset).num_classes), np.nan, np.float32)
        probs[-1] = self.judge_probs(images[-1])
        return Realism(probs, ratio, nearest, *self.colour(images, start))

    def verdicts(self, images: np.ndarray, targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The success rule for frames each with its own target: the judge's class, the
        nearest-real ratio toward the frame's target, and success (the judge says the target and
        the ratio is within the target's 90th percentile), each (...).

        ``images`` (..., *image shape); ``targets`` an int or an array broadcastable to (...). The one
        place the rule is written for many targets: the success map, the gallery and the benchmarks
        use it."""
        images = np.asarray(images, np.float32)
        lead = images.shape[:images.ndim - len(self.reference.image_shape)]
        targets = np.broadcast_to(np.asarray(targets, np.int64), lead)
        judge_class = self.judge_probs(images).argmax(-1) if images.size else np.zeros(lead, np.int64)
        nn = np.zeros(lead, np.float32)
        for c in np.unique(targets):
            sel = targets == c
            nn[sel] = self.reference.nearest(images[sel], int(c))[0]
        return judge_class, nn, (judge_class == targets) & (nn <= self.reference.p90[targets])

    def success(self, judge_probs: np.ndarray, nn_ratio: np.ndarray, target: int) -> np.ndarray:
        """Judge predicts ``target`` and the ratio is within the real images' 90th percentile."""
        return (np.asarray(judge_probs).argmax(-1) == target) & (np.asarray(nn_ratio) <= self.reference.p90[target])


class Scorers:
    """One :class:`RealismScorer` per data set, loaded on first use, on one device.

    A data set whose judge or reference images cannot be loaded gets None, and the reason in
    :attr:`errors`: realism is then left out, and the rest of the run goes on.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = str(device)
        self._scorers: dict[str, RealismScorer | None] = {}
        self.errors: dict[str, str] = {}

    def get(self, dataset: str) -> RealismScorer | None:
        """The scorer of ``dataset``; None, with the reason in :attr:`errors`, if unavailable."""
        if dataset not in self._scorers:
            try:
                self._scorers[dataset] = RealismScorer(dataset=dataset, device=self.device)
            except (ReferenceUnavailableError, ModelLoadError, KeyError, ValueError) as exc:
                self._scorers[dataset] = None
                self.errors[dataset] = str(exc)
        return self._scorers[dataset]
