"""Small pyqtgraph building blocks shared by the model columns: image boxes, and how a grey or
colour image (and a signed δ) is put into one."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

__all__ = ["GRAY_LUT", "delta_rgb", "image_box", "set_delta", "set_image"]

GRAY_LUT = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def image_box(layout: pg.GraphicsLayout, row: int, col: int, size: tuple[int, int] = (28, 28)
              ) -> tuple[pg.ViewBox, pg.ImageItem]:
    """An image of ``size`` (height, width) in a fixed, mouse-free box at (row, col) of ``layout``."""
    box = layout.addViewBox(row=row, col=col, lockAspect=True, enableMouse=False, invertY=True)
    box.setMenuEnabled(False)
    box.setDefaultPadding(0.0)
    item = pg.ImageItem(axisOrder="row-major")
    box.addItem(item)
    box.setRange(xRange=(0, size[1]), yRange=(0, size[0]), padding=0)
    return box, item


def set_image(item: pg.ImageItem, image: np.ndarray, lut: np.ndarray | None = GRAY_LUT) -> None:
    """Show ``image`` in [0, 1]: grey (H, W) through ``lut``, colour (3, H, W) as RGB."""
    if image.ndim == 3:
        item.setLookupTable(None)
        item.setImage(np.ascontiguousarray(np.transpose(image, (1, 2, 0))), autoLevels=False, levels=(0.0, 1.0))
    else:
        item.setLookupTable(lut)
        item.setImage(image, autoLevels=False, levels=(0.0, 1.0))


def delta_rgb(delta: np.ndarray, level: float) -> np.ndarray:
    """A colour δ (3, H, W) as an RGB picture (H, W, 3) in [0, 1]: each channel's signed change
    around mid-grey, 0.5 + δ / (2·level), so grey means unchanged, a brighter channel ink added
    in it and a darker one ink taken away (clipped at ±level)."""
    return np.clip(0.5 + np.transpose(delta, (1, 2, 0)) / (2.0 * level), 0.0, 1.0)


def set_delta(item: pg.ImageItem, delta: np.ndarray, level: float, lut: np.ndarray) -> None:
    """Show δ = x − x₀: grey worlds on the diverging ``lut`` at ±``level``, colour worlds as
    :func:`delta_rgb`."""
    if delta.ndim == 3:
        item.setLookupTable(None)
        item.setImage(np.ascontiguousarray(delta_rgb(delta, level)), autoLevels=False, levels=(0.0, 1.0))
    else:
        item.setLookupTable(lut)
        item.setImage(delta, autoLevels=False, levels=(-level, level))
