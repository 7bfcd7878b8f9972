"""The 10×10 source→target gallery: every digit class traversed to every other, per model.

Row r starts from a test digit of class r, column c is the target; the diagonal shows the
start digit itself. The start digits follow a fixed rule (the first test digit of each
class, index listed in the result), so galleries of different models and runs compare
cell by cell. All 90 traversals of all models run as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.data.datasets import DEFAULT_DATASET, get_dataset, test_set
from trav_gui.engine.output.render import font, tile

__all__ = ["Gallery", "gallery_batch", "gallery_start_indices", "render_gallery", "render_galleries_side_by_side", "run_gallery"]


def gallery_start_indices(dataset: str = DEFAULT_DATASET) -> list[int]:
    """Index of the first test image of each class 0..9 in ``dataset``'s shipped test set."""
    _, labels = test_set(dataset)
    return [int(np.flatnonzero(labels == c)[0]) for c in range(10)]


@dataclass(frozen=True)
class Gallery:
    """Result of :func:`run_gallery` for M models.

    Attributes
    ----------
    model_names : M names.
    start_indices : the 10 test digits used as rows.
    images : (M, 10, 10, 28, 28) float32, row = source class, column = target; the
        diagonal is the start digit.
    probs : (M, 10, 10, 10), class probabilities of each cell's image under its model.
    first_flip : (M, 10, 10) int, first step at which the prediction became the target
        (-1 if never; 0 on the diagonal).
    config : the traversal settings.
    """

    model_names: tuple[str, ...]
    start_indices: tuple[int, ...]
    images: np.ndarray
    probs: np.ndarray
    first_flip: np.ndarray
    config: TraversalConfig
    dataset: str = DEFAULT_DATASET


def gallery_batch(dataset: str = DEFAULT_DATASET) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """The gallery's 90 traversals as one batch: (source, target) pairs, starts, targets.

    Returns ``pairs`` (90 tuples, row-major, diagonal left out), ``x0`` (90, 28, 28) float32
    in [0, 1] (the start digit of each pair's source class) and ``targets`` (90,) int.
    """
    images, _ = test_set(dataset)
    starts = gallery_start_indices(dataset)
    pairs = [(r, c) for r in range(10) for c in range(10) if r != c]
    x0 = np.stack([images[starts[r]] for r, _ in pairs]).astype(np.float32) / 255.0
    return pairs, x0, np.array([c for _, c in pairs])


def run_gallery(models: Sequence, model_names: Sequence[str], config: TraversalConfig | None = None,
                progress: Callable[[int, int], None] | None = None, dataset: str = DEFAULT_DATASET) -> Gallery:
    """Traverse each of the 10 start images to each of the 9 other classes, for every model."""
    config = config or TraversalConfig()
    images, _ = test_set(dataset)
    starts = gallery_start_indices(dataset)
    pairs, x0, targets = gallery_batch(dataset)
    m = len(models)
    first_flip = np.full((m, len(pairs)), -1)
    last = None
    for frame in traverse(models, x0, targets, config):
        hit = (frame.predictions == targets[None]) & (first_flip < 0)
        first_flip[hit] = frame.step
        last = frame
        if progress:
            progress(frame.step, config.steps)
    grid = np.zeros((m, 10, 10, 28, 28), np.float32)
    probs = np.zeros((m, 10, 10, 10), np.float32)
    flips = np.zeros((m, 10, 10), int)
    # Frame 0 of a traversal is the start itself: the diagonal's probabilities.
    start_frame = next(traverse(models, np.stack([images[s] for s in starts]).astype(np.float32) / 255.0,
                                0, TraversalConfig(steps=1)))
    for k, (r, c) in enumerate(pairs):
        grid[:, r, c] = last.images[:, k]
        probs[:, r, c] = last.probs[:, k]
        flips[:, r, c] = first_flip[:, k]
    for r in range(10):
        grid[:, r, r] = start_frame.images[:, r]
        probs[:, r, r] = start_frame.probs[:, r]
    return Gallery(tuple(model_names), tuple(starts), grid, probs, flips, config, get_dataset(dataset).name)


def render_gallery(gallery: Gallery, model_index: int, scale: int = 3) -> Image.Image:
    """A labelled PNG-ready picture of one model's 10×10 grid.

    Each cell shows the image, upscaled ``scale``× (nearest neighbour), with the model's
    predicted class and its probability below; a cell whose prediction is not its target is
    captioned in red.
    """
    ds = get_dataset(gallery.dataset)
    names = [ds.short(k) for k in range(10)]
    wide = max(len(n) for n in names) > 2
    cell, caption = 28 * scale, 14
    margin = 60 if wide else 22
    w = margin + 10 * (cell + 4)
    h = margin + 30 + 10 * (cell + caption + 4)
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    small, title_font = font(11), font(14)
    name = gallery.model_names[model_index]
    cfg = gallery.config
    draw.text((4, 4), f"{name}: source (rows) -> target (columns), {cfg.steps} steps of "
                      f"{cfg.step_size} {cfg.norm.upper()}", fill="black", font=title_font)
    top = 30
    for c in range(10):
        draw.text((margin + c * (cell + 4) + 2, top), names[c], fill="black", font=small)
    for r in range(10):
        y = top + margin + r * (cell + caption + 4)
        draw.text((4, y + cell // 2 - 6), names[r], fill="black", font=small)
        for c in range(10):
            x = margin + c * (cell + 4)
            img.paste(tile(gallery.images[model_index, r, c], scale), (x, y))
            p = gallery.probs[model_index, r, c]
            pred = int(p.argmax())
            colour = "black" if pred == c else "red"
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
