"""One column per model: the current frame, δ = x − x₀, the prediction, and live curves.

Every plot item is created once, when the models are chosen; a frame only feeds data to
them (``setData`` / ``setImage`` with fixed levels), so nothing is rebuilt or autoscaled
while a run plays.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGraphicsItem, QVBoxLayout, QWidget

from trav_gui.qt.plot_items import image_box, set_delta, set_image
from trav_gui.qt.realism_view import JUDGE_COLOR, ColumnRealism

__all__ = ["CLASS_COLORS", "ComparisonView", "ModelColumn", "configure_pyqtgraph"]

# matplotlib's tab10: ten classes that stay distinguishable on a dark background (class k of a
# larger data set takes colour k mod 10: only the target and the start class are coloured).
CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
# With more classes than this, the readout names the most probable few.
NAMED_CLASSES = 10
TOP_NAMED = 3


def class_color(c: int) -> str:
    return CLASS_COLORS[c % len(CLASS_COLORS)]
L2_COLOR = "#4fc3f7"
LINF_COLOR = "#ffb74d"
CURSOR_COLOR = (200, 200, 200, 140)
FLIP_COLOR = "#66bb6a"
RESTART_COLOR = "#f48fb1"  # a recipe's retry: back at the start
OTHERS_COLOR = "#8a8a8a"



def configure_pyqtgraph() -> None:
    """pyqtgraph's global look, as the app uses it (the benchmarks call it too)."""
    pg.setConfigOptions(antialias=True, foreground="#dddddd")


def _diverging_lut() -> np.ndarray:
    try:
        return pg.colormap.get("CET-D1").getLookupTable(nPts=256)
    except Exception:  # noqa: BLE001 - a missing colour map file must not stop the app
        return pg.ColorMap([0, 0.5, 1], [(40, 90, 200), (245, 245, 245), (200, 40, 40)]).getLookupTable(nPts=256)


class ModelColumn:
    """The views of one model, placed in column ``col`` of a ``pg.GraphicsLayout``.

    Rows: title · frame and δ map · prediction · P(class) over steps · ‖δ‖ over steps.
    Images are the data set's: grey (H, W) or colour (3, H, W) (``image_size`` is (H, W)).
    """

    def __init__(self, layout: pg.GraphicsLayout, col: int, name: str, subtitle: str,
                 delta_lut: np.ndarray, class_names: Sequence[str] | None = None, compact: bool = False,
                 image_size: tuple[int, int] = (28, 28)) -> None:
        self.name = name
        # Three or more columns: shorter lines, broken where a wide column would use " · ", so
        # that every column fits a laptop screen (1366 px) beside the left panel.
        self.compact = compact
        self._sep = "<br>" if compact else " · "
        if compact:
            subtitle = subtitle.split(" (")[0].replace(" · ", "<br>")
        self.class_names = list(class_names or (str(c) for c in range(10)))
        self._delta_lut = delta_lut
        self.title = layout.addLabel(f"<b>{name}</b><br><span style='color:#aaa'>{subtitle}</span>",
                                     row=0, col=col, size="10pt")
        images = layout.addLayout(row=1, col=col)
        images.setSpacing(4)
        self.frame_box, self.frame_item = image_box(images, 0, 0, image_size)
        self.delta_box, self.delta_item = image_box(images, 0, 1, image_size)
        images.addLabel("x (frame)" if compact else "x (current frame)", row=1, col=0, size="8pt", color="#aaa")
        self.delta_caption = images.addLabel("δ = x − x₀", row=1, col=1, size="8pt", color="#aaa")
        self.frame_item.setLevels((0.0, 1.0))
        self.delta_item.setLookupTable(delta_lut)
        self._delta_level = 1.0
        self.delta_item.setLevels((-1.0, 1.0))
        self.prediction = layout.addLabel("", row=2, col=col, size="10pt" if compact else "12pt")

        self.prob_plot: pg.PlotItem = layout.addPlot(row=3, col=col)
        self.prob_plot.setTitle("P(class)", size="9pt")
        self.prob_plot.setYRange(0, 1, padding=0.02)
        self.prob_plot.setMouseEnabled(x=False, y=False)
        self.prob_plot.setMenuEnabled(False)
        self.prob_plot.showGrid(x=False, y=False)
        self.prob_plot.setLabel("left", "probability")
        self.prob_plot.hideAxis("bottom")  # the norm plot below shares the steps axis
        # Three items, not ten: the target, the start class, and every other class in one
        # muted item (a curve per class costs a setData and a paint each, on the GUI thread
        # that the traversal shares the interpreter with).
        self.others_curve = self.prob_plot.plot(pen=pg.mkPen(OTHERS_COLOR, width=1), antialias=False)
        self.start_curve = self.prob_plot.plot()
        self.target_curve = self.prob_plot.plot()
        self._others: list[int] = list(range(len(self.class_names)))
        self.flip_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(FLIP_COLOR, width=2),
                                         label="", labelOpts={"position": 0.55, "color": FLIP_COLOR,
                                                              "fill": (20, 20, 20, 200)})
        self.flip_line.setVisible(False)
        self.prob_plot.addItem(self.flip_line, ignoreBounds=True)
        self.restart_line = pg.InfiniteLine(angle=90, movable=False,
                                            pen=pg.mkPen(RESTART_COLOR, width=2, style=Qt.PenStyle.DotLine),
                                            label="", labelOpts={"position": 0.3, "color": RESTART_COLOR,
                                                                 "fill": (20, 20, 20, 200)})
        self.restart_line.setVisible(False)
        self.prob_plot.addItem(self.restart_line, ignoreBounds=True)

        self.norm_plot: pg.PlotItem = layout.addPlot(row=4, col=col)
        self.norm_plot.setTitle(f"<span style='color:{L2_COLOR}'>‖δ‖₂</span> and "
                                f"<span style='color:{LINF_COLOR}'>‖δ‖∞</span>", size="9pt")
        self.norm_plot.setMouseEnabled(x=False, y=False)
        self.norm_plot.setMenuEnabled(False)
        self.norm_plot.showGrid(x=False, y=False)
        self.norm_plot.setLabel("bottom", "step")
        self.norm_plot.setXLink(self.prob_plot)  # steps line up; other columns link to this
        self.l2_curve = self.norm_plot.plot(pen=pg.mkPen(L2_COLOR, width=2))
        self.linf_curve = self.norm_plot.plot(pen=pg.mkPen(LINF_COLOR, width=2))
        self.eps_line = pg.InfiniteLine(angle=0, movable=False, label="ε",
                                        labelOpts={"position": 0.05, "color": "#ddd"})
        self.eps_line.setVisible(False)
        self.norm_plot.addItem(self.eps_line)

        self.realism = ColumnRealism(layout, col, images, self.prob_plot, self.prob_plot, row=5, compact=compact,
                                     image_size=image_size)
        self._colour = False  # a colour world: δ shown per channel (set by show_start)
        for plot in (self.prob_plot, self.norm_plot):
            # Fixed axis widths: tick labels that grow ("8" to "10") must not re-lay out the
            # whole scene, which would paint it twice per redraw.
            plot.getAxis("left").setWidth(48)
            # Axes change only when a range does: paint them from a cached pixmap, not anew
            # at every redraw of the curves they frame.
            for name in ("left", "bottom"):
                plot.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.cursors = []
        for plot in (self.prob_plot, self.norm_plot):
            line = pg.InfiniteLine(angle=90, movable=False,
                                   pen=pg.mkPen(CURSOR_COLOR, width=1, style=Qt.PenStyle.DashLine))
            plot.addItem(line, ignoreBounds=True)
            self.cursors.append(line)
        self.target = 0
        self._p90: float | None = None
        self.start_class: int | None = None
        self._norm_top = 1.0

    @property
    def delta_level(self) -> float:
        """The ± range of the δ map's colours."""
        return self._delta_level

    def link_x(self, other: "ModelColumn") -> None:
        self.prob_plot.setXLink(other.prob_plot)

    def begin_run(self, target: int, start_class: int, max_steps: int, eps: float | None,
                  eps_norm: str, delta_level: float, p90: float | None = None) -> None:
        """Style the curves for a new run and clear the old data (``p90``: realism threshold)."""
        self.target, self.start_class = target, start_class
        self.realism.clear(p90)
        self._p90 = p90
        self.target_curve.setPen(pg.mkPen(class_color(target), width=4))
        self.start_curve.setPen(pg.mkPen(class_color(start_class), width=2.5, style=Qt.PenStyle.DashLine))
        self.start_curve.setVisible(0 <= start_class != target)
        self._others = [c for c in range(len(self.class_names)) if c not in (target, start_class)]
        # Compact columns leave out the class names (the prediction line above names them).
        target_name, start_name = ("", "") if self.compact else (self.class_names[target], self.class_names[start_class])
        self.prob_plot.setTitle(
            ("" if self.compact else "P(class) · ")
            + f"<span style='color:{class_color(target)}'>━ target {target_name}</span>"
            + (f" · <span style='color:{class_color(start_class)}'>╌ start {start_name}</span>"
               if 0 <= start_class != target else "")
            + ("" if self.compact else f" · <span style='color:{OTHERS_COLOR}'>others</span>")
            + f" · <span style='color:{JUDGE_COLOR}'>⋯ judge</span>", size="9pt")
        for curve in (self.target_curve, self.start_curve, self.others_curve):
            curve.setData([], [])
        self.l2_curve.setData([], [])
        self.linf_curve.setData([], [])
        self.prob_plot.setXRange(0, max(1, max_steps), padding=0.01)
        # The norm plot's y range is set by hand and only grows, in round steps: pyqtgraph's
        # auto-range would change it at paint time and so paint the whole scene twice.
        self.norm_plot.disableAutoRange()
        self.prob_plot.disableAutoRange()
        self._norm_top = _nice_ceiling(1.1 * eps) if eps is not None else 1.0
        self.norm_plot.setYRange(0, self._norm_top, padding=0.02)
        self.set_flip(None)
        self.set_restart(None)
        if eps is None:
            self.eps_line.setVisible(False)
        else:
            self.eps_line.setPos(eps)
            self.eps_line.setPen(pg.mkPen(L2_COLOR if eps_norm == "l2" else LINF_COLOR, width=1.5,
                                          style=Qt.PenStyle.DotLine))
            self.eps_line.label.setFormat(f"ε = {eps:g} ({'L2' if eps_norm == 'l2' else 'L∞'})")
            self.eps_line.setVisible(True)
        self._delta_level = delta_level
        self.delta_item.setLevels((-delta_level, delta_level))
        # Colour: each channel's change around mid-grey (grey = unchanged), kept short to fit a column.
        self.delta_caption.setText(f"δ per channel (±{delta_level:g})" if self._colour and not self.compact
                                   else f"δ (±{delta_level:g})" if self.compact
                                   else f"δ = x − x₀  (±{delta_level:g})")

    def set_curves(self, steps: np.ndarray, probs: np.ndarray, l2: np.ndarray, linf: np.ndarray) -> None:
        """Feed the curves: ``steps`` (n,), ``probs`` (n, K), ``l2``/``linf`` (n,)."""
        n = len(steps)
        self.target_curve.setData(steps, probs[:, self.target], skipFiniteCheck=True)
        if self.start_curve.isVisible():
            self.start_curve.setData(steps, probs[:, self.start_class], skipFiniteCheck=True)
        k = len(self._others)
        connect = np.ones(n * k, dtype=bool)
        connect[n - 1::n] = False  # no line from one class's last step to the next one's first
        self.others_curve.setData(np.tile(steps, k), probs[:, self._others].T.ravel(), connect=connect,
                                  skipFiniteCheck=True)
        self.l2_curve.setData(steps, l2, skipFiniteCheck=True)
        self.linf_curve.setData(steps, linf, skipFiniteCheck=True)
        top = float(max(np.max(l2, initial=0.0), np.max(linf, initial=0.0)))
        if top > self._norm_top:
            self._norm_top = _nice_ceiling(1.2 * top)
            self.norm_plot.setYRange(0, self._norm_top, padding=0.02)

    def set_flip(self, step: int | None) -> None:
        """Mark the first step whose prediction is the target; None hides the marker."""
        if step is None:
            self.flip_line.setVisible(False)
            return
        self.flip_line.setPos(step)
        self.flip_line.label.setFormat(f"→ {self.class_names[self.target]} at step {step}")
        self.flip_line.setVisible(True)

    def set_restart(self, step: int | None) -> None:
        """Mark the step a recipe's retry went back to the start; None hides the marker."""
        if step is None:
            self.restart_line.setVisible(False)
            return
        self.restart_line.setPos(step)
        self.restart_line.label.setFormat(f"↺ retry at {step}")  # the critic rejected the endpoint
        self.restart_line.setVisible(True)

    def class_curve(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """The (steps, probabilities) drawn for class ``c``."""
        if c == self.target:
            return self.target_curve.getData()
        if c == self.start_class and self.start_curve.isVisible():
            return self.start_curve.getData()
        x, y = self.others_curve.getData()
        n = len(x) // len(self._others) if self._others else 0
        i = self._others.index(c)
        return x[i * n:(i + 1) * n], y[i * n:(i + 1) * n]

    @property
    def flip_step(self) -> int | None:
        return int(round(self.flip_line.value())) if self.flip_line.isVisible() else None

    def show_step(self, step: int, image: np.ndarray, delta: np.ndarray, probs: np.ndarray,
                  judge_probs: np.ndarray | None = None, ratio: float = float("nan"),
                  nearest: np.ndarray | None = None, colour_kept: float = float("nan"),
                  grey_share: float = float("nan")) -> None:
        """Show the state at ``step``: image (H, W) or (3, H, W) in [0, 1], δ of the same shape,
        probs (K,), and the judge's probabilities, nearest-real ratio, nearest real image and (in
        colour worlds) whether the added ink keeps the start's colour, when known."""
        set_image(self.frame_item, image)
        set_delta(self.delta_item, delta, self._delta_level, self._delta_lut)
        pred = int(np.argmax(probs))
        color = FLIP_COLOR if pred == self.target else "#ffb74d"
        self.prediction.setText(
            f"step {step}: predicts <b style='color:{color}'>{self.class_names[pred]}</b> "
            f"({100 * float(probs[pred]):.1f}%){self._sep}P({self.class_names[self.target]}) = "
            f"{100 * float(probs[self.target]):.1f}%" + self._top_classes(probs)
            + self._readout(judge_probs, ratio, colour_kept, grey_share))
        for line in self.cursors:
            line.setPos(step)
        self.realism.show(step, nearest, self.class_names[self.target])

    def _top_classes(self, probs: np.ndarray) -> str:
        """With more than ten classes (one muted curve for the others), the most probable few by name."""
        if len(self.class_names) <= NAMED_CLASSES:
            return ""
        top = np.argsort(probs)[::-1][:TOP_NAMED]
        return ("<br><span style='font-size:9pt; color:#aaa'>top: "
                + ", ".join(f"{self.class_names[c]} {100 * float(probs[c]):.0f}%" for c in top) + "</span>")

    def _readout(self, judge_probs, ratio, colour_kept: float = float("nan"), grey_share: float = float("nan")) -> str:
        text = ColumnRealism.readout(judge_probs, ratio, self.class_names, self.target, self._p90,
                                     colour_kept, grey_share)
        if self.compact:
            text = text.replace(" · ", "<br>")
        return f"<br><span style='font-size:10pt'>{text}</span>" if text else ""

    def show_start(self, image: np.ndarray, probs: np.ndarray | None) -> None:
        """Before a run: the start image, no δ, the start prediction."""
        self._colour = image.ndim == 3
        set_image(self.frame_item, image)
        set_delta(self.delta_item, np.zeros_like(image), self._delta_level, self._delta_lut)
        if probs is None:
            self.prediction.setText("no start image")
        else:
            pred = int(np.argmax(probs))
            self.prediction.setText(f"start: predicts <b>{self.class_names[pred]}</b> ({100 * float(probs[pred]):.1f}%)")
        for line in self.cursors:
            line.setPos(0)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is at least ``value`` (``value`` > 0)."""
    exp = math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10 ** exp >= value:
            return m * 10 ** exp
    return 10 ** (exp + 1)


class _TimedLayoutWidget(pg.GraphicsLayoutWidget):
    """A GraphicsLayoutWidget that remembers how long its last paint took (seconds)."""

    last_paint_s = 0.0

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        t0 = time.perf_counter()
        super().paintEvent(event)
        self.last_paint_s = time.perf_counter() - t0


class ComparisonView(QWidget):
    """The model columns side by side in one graphics scene, x-axes shared."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = _TimedLayoutWidget()
        self.graphics.setBackground("#1e1e22")
        self.graphics.ci.setSpacing(6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.columns: list[ModelColumn] = []
        self.class_names: list[str] = [str(c) for c in range(10)]  # of the data set shown
        self.image_size: tuple[int, int] = (28, 28)  # (H, W) of its images
        self.reference = None  # the realism ReferenceSet of the run on screen, if it is scored
        self._delta_lut = _diverging_lut()
        self._message = None

    def set_models(self, names: Sequence[str], subtitles: Sequence[str]) -> None:
        """Build one column per model (the only time plot items are created)."""
        self.graphics.ci.clear()
        self.columns = []
        self._message = None
        if not names:
            return
        for col, (name, sub) in enumerate(zip(names, subtitles)):
            column = ModelColumn(self.graphics.ci, col, name, sub, self._delta_lut, self.class_names,
                                 compact=len(names) > 2, image_size=self.image_size)
            if self.columns:
                column.link_x(self.columns[0])
            self.columns.append(column)
        ci = self.graphics.ci
        for row, factor in ((0, 1), (1, 4), (2, 1), (3, 4), (4, 3), (5, 3)):
            ci.layout.setRowStretchFactor(row, factor)

    def show_message(self, html: str) -> None:
        """Replace the columns by a message (e.g. no models found)."""
        self.graphics.ci.clear()
        self.columns = []
        self._message = self.graphics.ci.addLabel(html, row=0, col=0, size="13pt")

    def begin_run(self, target: int, start_probs: dict, config) -> None:
        """Clear every column for a new run of ``config`` toward ``target``."""
        delta_level = min(1.0, config.eps) if (config.eps is not None and config.norm == "linf") else 1.0
        p90 = float(self.reference.p90[target]) if self.reference is not None else None
        for column in self.columns:
            start = start_probs.get(column.name)
            column.begin_run(target, int(start.argmax()) if start is not None else -1,
                             config.steps, config.eps, config.norm, delta_level, p90)

    def show_start(self, image: np.ndarray, target: int, start_probs: dict) -> None:
        """Before a run: every column shows ``image`` and its model's prediction of it."""
        for column in self.columns:
            column.target = target
            column.show_start(image, start_probs.get(column.name))

    def draw_curves(self, history, config) -> None:
        """Feed every column the curves of ``history`` (a RunHistory) so far."""
        steps = history.steps
        flips, restarts = history.flip_steps(), history.restart_steps()
        start_classes = history.start_classes()
        for j, column in enumerate(self.columns[: history.n_models]):
            if column.start_class != start_classes[j]:
                column.begin_run(history.target, start_classes[j], config.steps, config.eps, config.norm,
                                 column.delta_level)
            column.set_curves(steps, history.probs[:, j], history.l2[:, j], history.linf[:, j])
            column.set_flip(flips[j])
            column.set_restart(restarts[j])
        if history.has_realism:
            confident, best = history.confident_points(), history.most_realistic()
            for j, column in enumerate(self.columns[: history.n_models]):
                column.realism.set_curves(steps, history.judge_probs[:, j, history.target], history.nn_ratio[:, j])
                column.realism.set_markers(confident[j], best[j])

    def show_frame(self, history, index: int, x0: np.ndarray) -> None:
        """Show frame ``index`` of ``history`` in every column (δ against ``x0``)."""
        step = int(history.steps[index])
        for j, column in enumerate(self.columns[: history.n_models]):
            image = history.images[index, j]
            nearest = int(history.nearest[index, j])
            judged = np.flatnonzero(np.isfinite(history.judge_probs[: index + 1, j, 0]))  # judged while live
            column.show_step(step, image, image - x0, history.probs[index, j],
                             history.judge_probs[judged[-1], j] if judged.size else None,
                             float(history.nn_ratio[index, j]),
                             self.reference.image(nearest) if self.reference is not None and nearest >= 0 else None,
                             float(history.colour_kept[index, j]), float(history.grey_share[index, j]))

    @property
    def message(self) -> str | None:
        return None if self._message is None else self._message.text
