"""The K×K source→target gallery: every class traversed to every other, per model.

Row r starts from a test image of class r, column c is the target; the diagonal shows the
start image itself. The start images follow a fixed rule (the first test image of each
class, index listed in the result), so galleries of different models and runs compare
cell by cell. All K·(K−1) traversals of all models run as one batch. A data set of more than
:data:`MAX_GALLERY_CLASSES` classes shows a chosen subset of them (the first ones by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.data.datasets import DEFAULT_DATASET, get_dataset, stored_shape, test_set
from trav_gui.engine.output.render import font, tile

__all__ = ["MAX_GALLERY_CLASSES", "Gallery", "gallery_classes", "gallery_batch", "gallery_start_indices", "render_gallery", "render_galleries_side_by_side", "run_gallery"]


# A gallery grid of more classes would not fit a screen or a page.
MAX_GALLERY_CLASSES = 12


def gallery_classes(dataset: str = DEFAULT_DATASET, classes: Sequence[int] | None = None) -> list[int]:
    """The classes a gallery shows: ``classes`` (checked: distinct, in range, 2 to
    :data:`MAX_GALLERY_CLASSES`), else all of the data set's, or its first 12 when it has more."""
    k = get_dataset(dataset).num_classes
    if classes is None:
        return list(range(min(k, MAX_GALLERY_CLASSES)))
    chosen = [int(c) for c in classes]
    if len(set(chosen)) != len(chosen) or not 2 <= len(chosen) <= MAX_GALLERY_CLASSES or not all(
            0 <= c < k for c in chosen):
        raise ValueError(f"a gallery shows 2 to {MAX_GALLERY_CLASSES} distinct classes of 0..{k - 1}, got {chosen}")
    return chosen


def gallery_start_indices(dataset: str = DEFAULT_DATASET, classes: Sequence[int] | None = None) -> list[int]:
    """Index of the first test image of each gallery class in ``dataset``'s shipped test set."""
    _, labels = test_set(dataset)
    missing = [c for c in gallery_classes(dataset, classes) if not (labels == c).any()]
    if missing:
        raise ValueError(f"the {get_dataset(dataset).title} test set has no image of class {missing[0]}")
    return [int(np.flatnonzero(labels == c)[0]) for c in gallery_classes(dataset, classes)]


@dataclass(frozen=True)
class Gallery:
    """Result of :func:`run_gallery` for M models.

    Attributes
    ----------
    model_names : M names.
    start_indices : the G test images used as rows (G = len(classes)).
    images : (M, G, G, H, W) float32 (colour: (M, G, G, 3, H, W)), row = source class,
        column = target; the diagonal is the start image.
    probs : (M, G, G, K), class probabilities of each cell's image under its model.
    first_flip : (M, G, G) int, first step at which the prediction became the target
        (-1 if never; 0 on the diagonal).
    config : the traversal settings.
    classes : the G classes of the rows and columns, in order.
    """

    model_names: tuple[str, ...]
    start_indices: tuple[int, ...]
    images: np.ndarray
    probs: np.ndarray
    first_flip: np.ndarray
    config: TraversalConfig
    dataset: str = DEFAULT_DATASET
    classes: tuple[int, ...] = tuple(range(10))


def gallery_batch(dataset: str = DEFAULT_DATASET, classes: Sequence[int] | None = None
                  ) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """The gallery's G·(G−1) traversals as one batch: (row, column) pairs, starts, targets.

    Returns ``pairs`` (tuples of row and column positions, row-major, diagonal left out),
    ``x0`` (P, *image shape) float32 in [0, 1] (the start image of each pair's row) and
    ``targets`` (P,) int (the column's class).
    """
    images, _ = test_set(dataset)
    chosen = gallery_classes(dataset, classes)
    starts = gallery_start_indices(dataset, chosen)
    g = len(chosen)
    pairs = [(r, c) for r in range(g) for c in range(g) if r != c]
    x0 = np.stack([images[starts[r]] for r, _ in pairs]).astype(np.float32) / 255.0
    return pairs, x0, np.array([chosen[c] for _, c in pairs])


def run_gallery(models: Sequence, model_names: Sequence[str], config: TraversalConfig | None = None,
                progress: Callable[[int, int], None] | None = None, dataset: str = DEFAULT_DATASET,
                classes: Sequence[int] | None = None) -> Gallery:
    """Traverse the start image of each gallery class to each of the other classes, for every model."""
    config = config or TraversalConfig()
    ds = get_dataset(dataset)
    images, _ = test_set(dataset)
    chosen = gallery_classes(dataset, classes)
    starts = gallery_start_indices(dataset, chosen)
    pairs, x0, targets = gallery_batch(dataset, chosen)
    m, g = len(models), len(chosen)
    first_flip = np.full((m, len(pairs)), -1)
    last = None
    for frame in traverse(models, x0, targets, config, shape=ds.shape):
        hit = (frame.predictions == targets[None]) & (first_flip < 0)
        first_flip[hit] = frame.step
        last = frame
        if progress:
            progress(frame.step, config.steps)
    grid = np.zeros((m, g, g, *stored_shape(ds)), np.float32)
    probs = np.zeros((m, g, g, last.probs.shape[-1]), np.float32)
    flips = np.zeros((m, g, g), int)
    # Frame 0 of a traversal is the start itself: the diagonal's probabilities.
    start_frame = next(traverse(models, np.stack([images[s] for s in starts]).astype(np.float32) / 255.0,
                                0, TraversalConfig(steps=1), shape=ds.shape))
    for k, (r, c) in enumerate(pairs):
        grid[:, r, c] = last.images[:, k]
        probs[:, r, c] = last.probs[:, k]
        flips[:, r, c] = first_flip[:, k]
    for r in range(g):
        grid[:, r, r] = start_frame.images[:, r]
        probs[:, r, r] = start_frame.probs[:, r]
    return Gallery(tuple(model_names), tuple(starts), grid, probs, flips, config, ds.name, tuple(chosen))


def render_gallery(gallery: Gallery, model_index: int, scale: int = 3) -> Image.Image:
    """A labelled PNG-ready picture of one model's G×G grid.

    Each cell shows the image, upscaled ``scale``× (nearest neighbour), with the model's
    predicted class and its probability below; a cell whose prediction is not its target is
    captioned in red.
    """
    ds = get_dataset(gallery.dataset)
    names = [ds.short(k) for k in range(ds.num_classes)]
    classes = gallery.classes
    g = len(classes)
    wide = max(len(names[k]) for k in classes) > 2
    cell, caption = gallery.images.shape[-1] * scale, 14
    margin = 60 if wide else 22
    w = margin + g * (cell + 4)
    h = margin + 30 + g * (cell + caption + 4)
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    small, title_font = font(11), font(14)
    name = gallery.model_names[model_index]
    cfg = gallery.config
    draw.text((4, 4), f"{name}: source (rows) -> target (columns), {cfg.steps} steps of "
                      f"{cfg.step_size} {cfg.norm.upper()}", fill="black", font=title_font)
    top = 30
    for c in range(g):
        draw.text((margin + c * (cell + 4) + 2, top), names[classes[c]], fill="black", font=small)
    for r in range(g):
        y = top + margin + r * (cell + caption + 4)
        draw.text((4, y + cell // 2 - 6), names[classes[r]], fill="black", font=small)
        for c in range(g):
            x = margin + c * (cell + 4)
            img.paste(tile(gallery.images[model_index, r, c], scale), (x, y))
            p = gallery.probs[model_index, r, c]
            pred = int(p.argmax())
            colour = "black" if pred == classes[c] else "red"
            draw.text((x + 2, y + cell + 1), f"{names[pred]} {p[pred]:.2f}", fill=colour, font=small)
    return img


def render_galleries_side_by_side(gallery: Gallery, scale: int = 3) -> Image.Image:
    """All models' grids next to each other."""
    tiles = [render_gallery(gallery, i, scale) for i in range(len(gallery.model_names))]
    out = Image.new("RGB", (sum(t.width for t in tiles) + 20 * (len(tiles) - 1), max(t.height for t in tiles)), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + 20
    return out
