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
from trav_gui.engine.data.datasets import (
    DEFAULT_DATASET,
    get_dataset,
    stored_shape,
    test_set,
)
from trav_gui.engine.output.render import font, tile

__all__ = [
    "BADGE_COLOURS",
    "MAX_GALLERY_CLASSES",
    "Gallery",
    "badge",
    "cell_at",
    "gallery_batch",
    "gallery_classes",
    "gallery_start_indices",
    "render_galleries_side_by_side",
    "render_gallery",
    "run_gallery",
]


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
    images : (M, R, G, H, W) float32 (colour: (M, R, G, 3, H, W)), row = source class,
        column = target; the diagonal is the start image. R = G, or 1 for a gallery from one
        given start (:attr:`rows` then names its class; its own column shows the start).
    probs : (M, G, G, K), class probabilities of each cell's image under its model.
    first_flip : (M, G, G) int, first step at which the prediction became the target
        (-1 if never; 0 on the diagonal).
    config : the traversal settings.
    classes : the G classes of the rows and columns, in order.
    judge_class, nn_ratio, success : (M, R, G), with a realism scorer: the independent judge's
        class of each shown image, its nearest-real ratio toward the column's class, and
        whether both say it is a real-looking target (see ``RealismScorer.success``); None
        without one. The start's own cell holds its judge class and ratio, and success False.
    start_classes : None, or the one row's class of a gallery from a given start.
    """

    model_names: tuple[str, ...]
    start_indices: tuple[int, ...]
    images: np.ndarray
    probs: np.ndarray
    first_flip: np.ndarray
    config: TraversalConfig
    dataset: str = DEFAULT_DATASET
    classes: tuple[int, ...] = tuple(range(10))
    judge_class: np.ndarray | None = None
    nn_ratio: np.ndarray | None = None
    success: np.ndarray | None = None
    start_classes: tuple[int, ...] | None = None

    @property
    def rows(self) -> tuple[int, ...]:
        """The class of each row's start: ``classes`` for a K×K gallery; a one-row gallery
        from a given start has that start's class."""
        return self.start_classes if self.start_classes is not None else self.classes

    def traversed(self) -> np.ndarray:
        """(R, G) bool: the cells that are traversals (not a start shown in its own class)."""
        return np.array(self.rows)[:, None] != np.array(self.classes)[None, :]

    def cell(self, row: int, column: int) -> tuple[int, int]:
        """(start test index, or -1 for a start not from the test set; target class) of a cell."""
        return self.start_indices[row], self.classes[column]


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
                classes: Sequence[int] | None = None, scorer=None, start: np.ndarray | None = None,
                start_class: int | None = None, start_index: int = -1) -> Gallery:
    """Traverse the start image of each gallery class to each of the other classes, for every model.

    With ``start`` (one image of the data set, as frames hold it) there is one row: that start
    to every other gallery class; ``start_class`` is its class (default: what the first model
    predicts), ``start_index`` its test index if it is a test image. With ``scorer`` (a
    :class:`~trav_gui.engine.realism.RealismScorer` of the data set) every shown image is judged.
    """
    config = config or TraversalConfig()
    ds = get_dataset(dataset)
    images, _ = test_set(dataset)
    chosen = gallery_classes(dataset, classes)
    if start is None:
        starts = gallery_start_indices(dataset, chosen)
        pairs, x0, targets = gallery_batch(dataset, chosen)
        start_images = np.stack([images[s] for s in starts]).astype(np.float32) / 255.0
        rows, row_classes = len(chosen), None
    else:
        start_images = np.asarray(start, np.float32)[None]
        if start_class is None:
            first = next(traverse(models[:1], start_images, 0, TraversalConfig(steps=1), shape=ds.shape))
            start_class = int(first.predictions[0, 0])
        starts, rows, row_classes = [int(start_index)], 1, (int(start_class),)
        pairs = [(0, c) for c in range(len(chosen)) if chosen[c] != start_class]
        x0 = np.repeat(start_images, len(pairs), axis=0)
        targets = np.array([chosen[c] for _, c in pairs])
    m, g = len(models), len(chosen)
    first_flip = np.full((m, len(pairs)), -1)
    last = None
    for frame in traverse(models, x0, targets, config, shape=ds.shape):
        hit = (frame.predictions == targets[None]) & (first_flip < 0)
        first_flip[hit] = frame.step
        last = frame
        if progress:
            progress(frame.step, config.steps)
    grid = np.zeros((m, rows, g, *stored_shape(ds)), np.float32)
    probs = np.zeros((m, rows, g, last.probs.shape[-1]), np.float32)
    flips = np.zeros((m, rows, g), int)
    # Frame 0 of a traversal is the start itself: the diagonal's probabilities.
    start_frame = next(traverse(models, start_images, 0, TraversalConfig(steps=1), shape=ds.shape))
    for k, (r, c) in enumerate(pairs):
        grid[:, r, c] = last.images[:, k]
        probs[:, r, c] = last.probs[:, k]
        flips[:, r, c] = first_flip[:, k]
    own = [(r, r) for r in range(g)] if start is None else [(0, c) for c in range(g) if chosen[c] == start_class]
    for r, c in own:
        grid[:, r, c] = start_frame.images[:, r]
        probs[:, r, c] = start_frame.probs[:, r]
    judged = _judge(grid, chosen, scorer) if scorer is not None else (None, None, None)
    if scorer is not None:
        for r, c in own:
            judged[2][:, r, c] = False  # the start itself: not a traversal's success
    return Gallery(tuple(model_names), tuple(starts), grid, probs, flips, config, ds.name, tuple(chosen),
                   *judged, row_classes)


def _judge(grid: np.ndarray, classes: Sequence[int], scorer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The judge's class, the nearest-real ratio toward each column's class, and success, per cell."""
    return scorer.verdicts(grid, np.asarray(classes)[None, None, :])


# Cell borders of a judged gallery: a real-looking target; the judge agrees but the image is
# further from real ones than 90 % of real images are; the judge says another class.
BADGE_COLOURS = {"success": (40, 170, 60), "unreal": (240, 170, 0), "judge_disagrees": (210, 40, 40)}


def badge(gallery: Gallery, model: int, row: int, column: int) -> str | None:
    """The cell's verdict (a key of :data:`BADGE_COLOURS`), None unjudged or for the start itself."""
    if gallery.success is None or gallery.rows[row] == gallery.classes[column]:
        return None
    if gallery.success[model, row, column]:
        return "success"
    return "unreal" if gallery.judge_class[model, row, column] == gallery.classes[column] else "judge_disagrees"


def _layout(gallery: Gallery, scale: int) -> dict:
    """Where render_gallery puts things: cell size, caption, margin, top, picture size."""
    ds = get_dataset(gallery.dataset)
    names = [ds.short(k) for k in range(ds.num_classes)]
    g, rows = len(gallery.classes), len(gallery.rows)
    wide = max(len(names[k]) for k in (*gallery.classes, *gallery.rows)) > 2
    cell, caption = gallery.images.shape[-1] * scale, 14
    margin = 60 if wide else 22
    top = 30 if gallery.success is None else 46
    return {"names": names, "cell": cell, "caption": caption, "margin": margin, "top": top,
            "width": margin + g * (cell + 4), "height": top + margin + rows * (cell + caption + 4)}


def cell_at(gallery: Gallery, x: float, y: float, scale: int = 3, gap: int = 20) -> tuple[int, int, int] | None:
    """(model, row, column) of the cell at picture position (x, y) of
    :func:`render_galleries_side_by_side` (same ``scale``), None between cells."""
    lay = _layout(gallery, scale)
    model, x_in = divmod(int(x), lay["width"] + gap)
    if not 0 <= model < len(gallery.model_names) or x_in >= lay["width"]:
        return None
    column, cx = divmod(x_in - lay["margin"], lay["cell"] + 4)
    row, cy = divmod(int(y) - lay["top"] - lay["margin"], lay["cell"] + lay["caption"] + 4)
    if x_in < lay["margin"] or int(y) < lay["top"] + lay["margin"] or cx >= lay["cell"] or cy >= lay["cell"] + lay["caption"]:
        return None
    if not (0 <= column < len(gallery.classes) and 0 <= row < len(gallery.rows)):
        return None
    return model, row, column


def render_gallery(gallery: Gallery, model_index: int, scale: int = 3) -> Image.Image:
    """A labelled PNG-ready picture of one model's grid.

    Each cell shows the image, upscaled ``scale``× (nearest neighbour), with the model's
    predicted class and its probability below; a cell whose prediction is not its target is
    captioned in red. A judged gallery frames each cell in the colour of its :func:`badge`.
    """
    lay = _layout(gallery, scale)
    names, cell, caption, margin, top = lay["names"], lay["cell"], lay["caption"], lay["margin"], lay["top"]
    classes = gallery.classes
    img = Image.new("RGB", (lay["width"], lay["height"]), "white")
    draw = ImageDraw.Draw(img)
    small, title_font = font(11), font(14)
    name = gallery.model_names[model_index]
    cfg = gallery.config
    draw.text((4, 4), f"{name}: source (rows) -> target (columns), {cfg.steps} steps of "
                      f"{cfg.step_size} {cfg.norm.upper()}", fill="black", font=title_font)
    if gallery.success is not None:
        x = 4
        for key, words in (("success", "real-looking target"), ("unreal", "judge agrees, not real-looking"),
                           ("judge_disagrees", "judge says another class")):
            draw.rectangle((x, 24, x + 10, 34), outline=BADGE_COLOURS[key], width=3)
            draw.text((x + 14, 23), words, fill="black", font=small)
            x += 22 + int(draw.textlength(words, font=small))
    for c in range(len(classes)):
        draw.text((margin + c * (cell + 4) + 2, top), names[classes[c]], fill="black", font=small)
    for r, row_class in enumerate(gallery.rows):
        y = top + margin + r * (cell + caption + 4)
        draw.text((4, y + cell // 2 - 6), names[row_class], fill="black", font=small)
        for c in range(len(classes)):
            x = margin + c * (cell + 4)
            img.paste(tile(gallery.images[model_index, r, c], scale), (x, y))
            verdict = badge(gallery, model_index, r, c)
            if verdict is not None:
                draw.rectangle((x - 2, y - 2, x + cell + 1, y + cell + 1), outline=BADGE_COLOURS[verdict], width=2)
            p = gallery.probs[model_index, r, c]
            pred = int(p.argmax())
            colour = "black" if pred == classes[c] else "red"
            draw.text((x + 2, y + cell + 1), f"{names[pred]} {p[pred]:.2f}", fill=colour, font=small)
    return img


def render_galleries_side_by_side(gallery: Gallery, scale: int = 3, gap: int = 20) -> Image.Image:
    """All models' grids next to each other, ``gap`` pixels apart (see :func:`cell_at`)."""
    tiles = [render_gallery(gallery, i, scale) for i in range(len(gallery.model_names))]
    out = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), max(t.height for t in tiles)), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + gap
    return out
