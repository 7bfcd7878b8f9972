"""A canvas to draw a digit on, with mouse or tablet: brush width (and colour, in colour worlds),
clear, undo of a stroke."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QTabletEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

__all__ = ["DrawingCanvas"]

CANVAS_SIZE = 280  # ten canvas pixels per MNIST pixel


@dataclass
class _Stroke:
    width: float
    points: list[tuple[QPointF, float]] = field(default_factory=list)  # (position, pressure)
    colour: QColor = field(default_factory=lambda: QColor(255, 255, 255))


class DrawingCanvas(QWidget):
    """White ink on black, like MNIST, on a fixed 280×280 raster shown at any widget size.

    A background image (a picked MNIST digit, upscaled) can sit under the strokes, so a
    user can edit a test digit. Undo removes the last stroke; clear removes all strokes and
    the background. In colour mode (:meth:`set_colour_mode`) the raster is RGB and strokes
    take the brush colour (:meth:`set_brush_colour`).

    Signals
    -------
    drawing_changed() : a stroke ended, or undo/clear changed the drawing.
    """

    drawing_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._strokes: list[_Stroke] = []
        self._current: _Stroke | None = None
        self._background: np.ndarray | None = None
        self._brush_width = 22.0
        self._colour_mode = False
        self._brush_colour = QColor(255, 0, 0)
        self._raster = QImage(CANVAS_SIZE, CANVAS_SIZE, QImage.Format.Format_Grayscale8)
        self._raster.fill(0)
        self.setMinimumSize(200, 200)
        sp = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        sp.setHeightForWidth(True)
        self.setSizePolicy(sp)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_TabletTracking, False)
        self.setToolTip("Draw a digit with the mouse or a pen. Ctrl+Z undoes the last stroke.")

    # --- public API ------------------------------------------------------------------

    def sizeHint(self) -> QSize:
        return QSize(240, 240)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, w: int) -> int:
        return w

    @property
    def brush_width(self) -> float:
        """Stroke width in raster pixels (the raster is 280×280)."""
        return self._brush_width

    def set_brush_width(self, width: float) -> None:
        self._brush_width = float(max(1.0, width))

    @property
    def colour_mode(self) -> bool:
        return self._colour_mode

    @property
    def brush_colour(self) -> QColor:
        return QColor(self._brush_colour)

    def set_brush_colour(self, colour: QColor) -> None:
        """The colour of the next strokes (colour mode only; grey mode draws white)."""
        self._brush_colour = QColor(colour)

    def set_colour_mode(self, on: bool) -> None:
        """Draw in colour (an RGB raster) or in grey; clears the canvas."""
        self._colour_mode = bool(on)
        fmt = QImage.Format.Format_RGB888 if on else QImage.Format.Format_Grayscale8
        self._raster = QImage(CANVAS_SIZE, CANVAS_SIZE, fmt)
        self._strokes.clear()
        self._background = None
        self._rebuild()

    @property
    def stroke_count(self) -> int:
        return len(self._strokes)

    def has_background(self) -> bool:
        return self._background is not None

    def is_empty(self) -> bool:
        return not self._strokes and self._background is None

    def set_background(self, image: np.ndarray | None) -> None:
        """Show ``image`` (grey (h, w) or colour (3, h, w) in [0, 1], e.g. a 28×28 digit) under the
        strokes; drops the strokes."""
        self._strokes.clear()
        if image is None:
            self._background = None
        else:
            a = np.clip(np.asarray(image, np.float32), 0, 1)
            if self._colour_mode and a.ndim == 2:
                a = np.repeat(a[None], 3, axis=0)
            elif not self._colour_mode and a.ndim == 3:
                a = a.max(axis=0)
            # Nearest neighbour onto the whole raster (ten canvas pixels per pixel at 28×28).
            rows = np.arange(CANVAS_SIZE) * a.shape[-2] // CANVAS_SIZE
            cols = np.arange(CANVAS_SIZE) * a.shape[-1] // CANVAS_SIZE
            self._background = np.ascontiguousarray(a[..., rows[:, None], cols[None, :]])
        self._rebuild()

    def clear(self) -> None:
        had = not self.is_empty()
        self._strokes.clear()
        self._background = None
        self._rebuild()
        if had:
            self.drawing_changed.emit()

    def undo(self) -> None:
        if self._strokes:
            self._strokes.pop()
            self._rebuild()
            self.drawing_changed.emit()

    def ink(self) -> np.ndarray:
        """The drawing as (280, 280) float32 ink in [0, 1] (0 = background); in colour mode
        (3, 280, 280)."""
        img = self._raster
        ptr = img.constBits()
        arr = np.frombuffer(ptr, np.uint8, count=img.bytesPerLine() * img.height())
        if self._colour_mode:
            rgb = arr.reshape(img.height(), img.bytesPerLine())[:, : 3 * img.width()].reshape(img.height(), img.width(), 3)
            return np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / 255.0
        arr = arr.reshape(img.height(), img.bytesPerLine())[:, : img.width()]
        return arr.astype(np.float32) / 255.0

    # --- drawing ---------------------------------------------------------------------

    def _to_raster(self, pos: QPointF) -> QPointF:
        s = CANVAS_SIZE / max(1, min(self.width(), self.height()))
        return QPointF(pos.x() * s, pos.y() * s)

    def _pen(self, width: float, colour: QColor) -> QPen:
        pen = QPen(colour)
        pen.setWidthF(width)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        return pen

    def _paint_segment(self, painter: QPainter, stroke: _Stroke, i: int) -> None:
        p, pressure = stroke.points[i]
        painter.setPen(self._pen(stroke.width * pressure, stroke.colour))
        if i == 0:
            painter.drawPoint(p)
        else:
            painter.drawLine(stroke.points[i - 1][0], p)

    def _rebuild(self) -> None:
        if self._background is not None and self._colour_mode:
            bg = np.ascontiguousarray(np.round(self._background * 255).astype(np.uint8).transpose(1, 2, 0))
            self._raster = QImage(bg.data, CANVAS_SIZE, CANVAS_SIZE, 3 * CANVAS_SIZE,
                                  QImage.Format.Format_RGB888).copy()
        elif self._background is not None:
            bg = np.ascontiguousarray(np.round(self._background * 255).astype(np.uint8))
            self._raster = QImage(bg.data, CANVAS_SIZE, CANVAS_SIZE, CANVAS_SIZE,
                                  QImage.Format.Format_Grayscale8).copy()
        else:
            self._raster.fill(0)
        painter = QPainter(self._raster)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for stroke in self._strokes:
            for i in range(len(stroke.points)):
                self._paint_segment(painter, stroke, i)
        painter.end()
        self.update()

    def _begin(self, pos: QPointF, pressure: float) -> None:
        self._current = _Stroke(self._brush_width, colour=QColor(self._brush_colour) if self._colour_mode
                                else QColor(255, 255, 255))
        self._extend(pos, pressure)

    def _extend(self, pos: QPointF, pressure: float) -> None:
        if self._current is None:
            return
        self._current.points.append((self._to_raster(pos), max(0.2, min(1.0, pressure))))
        painter = QPainter(self._raster)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._paint_segment(painter, self._current, len(self._current.points) - 1)
        painter.end()
        self.update()

    def _end(self) -> None:
        if self._current is None:
            return
        self._strokes.append(self._current)
        self._current = None
        self.update()  # repaint without the "draw a digit here" hint
        self.drawing_changed.emit()

    # --- events ----------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._begin(event.position(), 1.0)
            event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._extend(event.position(), 1.0)
            event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._end()
            event.accept()

    def tabletEvent(self, event: QTabletEvent) -> None:
        # Pen pressure scales the stroke width; accepting stops Qt from also sending mouse events.
        kind = event.type()
        pressure = event.pressure() if event.pressure() > 0 else 1.0
        if kind == QTabletEvent.Type.TabletPress:
            self._begin(event.position(), pressure)
        elif kind == QTabletEvent.Type.TabletMove and self._current is not None:
            self._extend(event.position(), pressure)
        elif kind == QTabletEvent.Type.TabletRelease:
            self._end()
        event.accept()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        side = min(self.width(), self.height())
        painter.fillRect(self.rect(), self.palette().window())
        target = QRectF(0, 0, side, side)
        painter.drawImage(target, self._raster)
        painter.setPen(QPen(QColor(90, 90, 100), 1))
        painter.drawRect(target.adjusted(0, 0, -1, -1))
        if self.is_empty() and self._current is None:
            painter.setPen(QColor(150, 150, 160))
            painter.drawText(target, Qt.AlignmentFlag.AlignCenter, "draw a digit here")
        painter.end()
