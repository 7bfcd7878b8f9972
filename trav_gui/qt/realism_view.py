"""The realism parts of a model column: the nearest real image, the judge's verdict, the
nearest-real ratio over the steps, and the confident point and most realistic step marked.

The numbers come from :mod:`trav_gui.engine.realism`, computed in the worker thread; this
module only draws them.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from trav_gui.qt.plot_items import image_box, set_image

__all__ = ["ColumnRealism", "JUDGE_COLOR", "RATIO_COLOR"]

JUDGE_COLOR = "#e0e0e0"
RATIO_COLOR = "#ba68c8"
CONFIDENT_COLOR = "#ffd54f"
BEST_COLOR = "#4dd0e1"
RATIO_TOP = 3.0


def _marker(color: str, text: str, position: float) -> pg.InfiniteLine:
    line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(color, width=1.5, style=Qt.PenStyle.DashLine),
                           label=text, labelOpts={"position": position, "color": color, "fill": (20, 20, 20, 200)})
    line.setVisible(False)
    return line


class ColumnRealism:
    """Realism views of one column (built once; fed data at every redraw)."""

    def __init__(self, layout: pg.GraphicsLayout, col: int, images: pg.GraphicsLayout, prob_plot: pg.PlotItem,
                 x_link: pg.PlotItem, row: int, compact: bool = False,
                 image_size: tuple[int, int] = (28, 28)) -> None:
        self.nearest_box, self.nearest_item = image_box(images, 0, 2, image_size)
        self.compact = compact
        self.nearest_caption = images.addLabel("nearest real" if compact else "nearest real image", row=1, col=2,
                                               size="8pt", color="#aaa")
        self.judge_curve = prob_plot.plot(pen=pg.mkPen(JUDGE_COLOR, width=1.5, style=Qt.PenStyle.DotLine))
        self.confident_line = _marker(CONFIDENT_COLOR, "", 0.85)
        prob_plot.addItem(self.confident_line, ignoreBounds=True)

        self.plot: pg.PlotItem = layout.addPlot(row=row, col=col)
        self.plot.setTitle(f"<span style='color:{RATIO_COLOR}'>nearest real ÷ typical</span>"
                           + ("" if compact else " (1 = as close as real images are)"), size="9pt")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMenuEnabled(False)
        self.plot.setYRange(0, RATIO_TOP, padding=0.02)
        self.plot.disableAutoRange()
        self.plot.setXLink(x_link)
        self.plot.getAxis("left").setWidth(48)
        self.plot.hideAxis("bottom")
        self.ratio_curve = self.plot.plot(pen=pg.mkPen(RATIO_COLOR, width=2))
        self.real_line = pg.InfiniteLine(angle=0, movable=False, label="real 90 %",
                                         pen=pg.mkPen("#888", width=1, style=Qt.PenStyle.DotLine),
                                         labelOpts={"position": 0.95, "color": "#aaa"})
        self.plot.addItem(self.real_line, ignoreBounds=True)
        self.best_line = _marker(BEST_COLOR, "most realistic", 0.8)
        self.plot.addItem(self.best_line, ignoreBounds=True)
        self.cursor = pg.InfiniteLine(angle=90, movable=False,
                                      pen=pg.mkPen((200, 200, 200, 140), width=1, style=Qt.PenStyle.DashLine))
        self.plot.addItem(self.cursor, ignoreBounds=True)
        self.best_step: int | None = None
        self.confident_step: int | None = None

    def clear(self, p90: float | None) -> None:
        """A new run: no curves, no markers; ``p90`` is the real images' 90th percentile ratio."""
        self.judge_curve.setData([], [])
        self.ratio_curve.setData([], [])
        self.nearest_item.clear()
        self.set_markers(None, None)
        self.real_line.setVisible(p90 is not None)
        if p90 is not None:
            self.real_line.setPos(p90)

    def set_curves(self, steps: np.ndarray, judge_target: np.ndarray, ratio: np.ndarray) -> None:
        """The judge's p(target) (on the probability plot) and the ratio over ``steps``; NaN: not yet known."""
        known = np.isfinite(ratio)
        self.judge_curve.setData(steps[known], judge_target[known], skipFiniteCheck=True)
        self.ratio_curve.setData(steps[known], np.minimum(ratio[known], RATIO_TOP), skipFiniteCheck=True)

    def set_markers(self, confident: int | None, best: int | None) -> None:
        """Mark the confident point (p(target) >= 0.9) and the most realistic step; None hides."""
        self.confident_step, self.best_step = confident, best
        for line, step, text in ((self.confident_line, confident, "confident (0.9) at {}"),
                                 (self.best_line, best, "most realistic: {}")):
            line.setVisible(step is not None)
            if step is not None:
                line.setPos(step)
                line.label.setFormat(text.format(step))

    def show(self, step: int, nearest_image: np.ndarray | None, target_name: str) -> None:
        self.cursor.setPos(step)
        # Compact columns: the class is named in the readout below (long names would widen the column).
        self.nearest_caption.setText("nearest real" if self.compact else f"nearest real {target_name}")
        if nearest_image is None:
            self.nearest_item.clear()
        else:
            set_image(self.nearest_item, nearest_image)

    @staticmethod
    def readout(judge_probs: np.ndarray | None, ratio: float, class_names, target: int, p90: float | None,
                colour_kept: float = float("nan"), grey_share: float = float("nan")) -> str:
        """'judge: 0, 97 % · nearest real 0: 1.31× typical' (HTML), and in colour worlds
        a second line 'colour kept (4 % grey)'; '' when not scored."""
        if judge_probs is None or not np.isfinite(ratio):
            return ""
        verdict = int(np.argmax(judge_probs))
        ok = "#66bb6a" if verdict == target else "#ffb74d"
        close = "#66bb6a" if p90 is not None and ratio <= p90 else "#ffb74d"
        text = (f"judge: <b style='color:{ok}'>{class_names[verdict]}</b>, {100 * float(judge_probs[verdict]):.0f} %"
                f" · nearest real {class_names[target]}: <b style='color:{close}'>{ratio:.2f}×</b> typical")
        if np.isfinite(colour_kept):
            kept = colour_kept > 0.5
            grey = f" ({100 * grey_share:.0f} % grey)" if np.isfinite(grey_share) else ""
            text += (f"<br><b style='color:{'#66bb6a' if kept else '#ffb74d'}'>colour "
                     f"{'kept' if kept else 'changed'}</b>{grey}")
        return text
