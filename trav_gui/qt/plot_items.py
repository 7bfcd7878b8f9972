"""Small pyqtgraph building blocks shared by the model columns."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

__all__ = ["GRAY_LUT", "image_box"]

GRAY_LUT = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def image_box(layout: pg.GraphicsLayout, row: int, col: int) -> tuple[pg.ViewBox, pg.ImageItem]:
    """A 28×28 grey image in a fixed, mouse-free box at (row, col) of ``layout``."""
    box = layout.addViewBox(row=row, col=col, lockAspect=True, enableMouse=False, invertY=True)
    box.setMenuEnabled(False)
    box.setDefaultPadding(0.0)
    item = pg.ImageItem(axisOrder="row-major")
    box.addItem(item)
    box.setRange(xRange=(0, 28), yRange=(0, 28), padding=0)
    return box, item
