"""The traversal settings: mode, norm, step size, steps, objective, stop, seed, speed."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QSpinBox,
    QWidget,
)

from trav_gui.engine.core.objectives import OBJECTIVE_DESCRIPTIONS
from trav_gui.engine.core.steps import NORMS
from trav_gui.engine.core.traversal import DEFAULT_PGD_EPS, DEFAULT_STOP_AT_PROB, DEFAULTS, TraversalConfig

__all__ = ["SettingsPanel"]

MAX_UI_STEPS = 10_000  # the window keeps every frame for scrubbing: 10k frames of 4 models ≈ 125 MB


class SettingsPanel(QGroupBox):
    """Widgets for every :class:`TraversalConfig` field, plus the playback speed.

    It opens on the engine's defaults (``DEFAULTS``) and offers the engine's norms and
    objectives, as the command line does.

    Signals
    -------
    speed_changed(float) : steps per second, 0 meaning as fast as possible.
    settings_changed() : any traversal setting changed (not the speed).
    """

    speed_changed = Signal(float)
    settings_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        form = QFormLayout(self)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)

        self.mode = QComboBox()
        self.mode.addItem("traversal (unconstrained)", "traversal")
        self.mode.addItem("PGD within an ε-ball", "pgd")
        self.mode.setToolTip("Traversal walks as far as the steps go; PGD projects every step "
                             "back onto the ball of radius ε around the start.")
        form.addRow("Mode", self.mode)

        self.norm = QComboBox()
        for name, description in NORMS.items():
            self.norm.addItem(description, name)
        form.addRow("Norm", self.norm)

        self.step_size = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=10.0, singleStep=0.01,
                                        value=DEFAULTS.step_size)
        self.step_size.setToolTip("Length of one step in the chosen norm (pixels in [0, 1]).")
        form.addRow("Step size", self.step_size)

        eps_row = QHBoxLayout()
        self.eps = QDoubleSpinBox(decimals=3, minimum=0.001, maximum=28.0, singleStep=0.1, value=DEFAULT_PGD_EPS)
        self.eps.setToolTip("Radius of the ball around the start (PGD mode).")
        self.random_start = QCheckBox("random start")
        eps_row.addWidget(self.eps, 1)
        eps_row.addWidget(self.random_start)
        form.addRow("ε", eps_row)

        self.max_steps = QSpinBox(minimum=1, maximum=MAX_UI_STEPS, value=DEFAULTS.steps, singleStep=10)
        form.addRow("Max steps", self.max_steps)

        self.objective = QComboBox()
        for name, description in OBJECTIVE_DESCRIPTIONS.items():
            self.objective.addItem(description, name)
        form.addRow("Objective", self.objective)

        stop_row = QHBoxLayout()
        self.stop_enabled = QCheckBox()
        self.stop_at = QDoubleSpinBox(decimals=3, minimum=0.01, maximum=1.0, singleStep=0.05,
                                      value=DEFAULT_STOP_AT_PROB)
        self.stop_at.setToolTip("Freeze a model's trajectory once P(target) reaches this.")
        self.stop_at.setEnabled(False)
        stop_row.addWidget(self.stop_enabled)
        stop_row.addWidget(self.stop_at, 1)
        form.addRow("Stop at P ≥", stop_row)

        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=DEFAULTS.seed)
        form.addRow("Seed", self.seed)

        self.speed = QSpinBox(minimum=0, maximum=1000, value=0, singleStep=5, suffix=" steps/s")
        self.speed.setSpecialValueText("as fast as possible")
        self.speed.setToolTip("Playback speed; 0 = as fast as the models compute.")
        form.addRow("Speed", self.speed)

        self.mode.currentIndexChanged.connect(self._update_enabled)
        self.stop_enabled.toggled.connect(self.stop_at.setEnabled)
        for w in (self.mode, self.norm, self.objective):
            w.currentIndexChanged.connect(self.settings_changed)
        for w in (self.step_size, self.eps, self.max_steps, self.stop_at, self.seed):
            w.valueChanged.connect(self.settings_changed)
        for w in (self.random_start, self.stop_enabled):
            w.toggled.connect(self.settings_changed)
        self.speed.valueChanged.connect(lambda v: self.speed_changed.emit(float(v)))
        self.set_config(DEFAULTS)  # mode, norm, objective, random start and stop as the engine's defaults

    def _update_enabled(self) -> None:
        pgd = self.mode.currentData() == "pgd"
        self.eps.setEnabled(pgd)
        self.random_start.setEnabled(pgd)

    @property
    def steps_per_second(self) -> float | None:
        """The speed limit, or None for as fast as possible."""
        return float(self.speed.value()) or None

    def config(self) -> TraversalConfig:
        """The settings as a validated :class:`TraversalConfig` (raises ValueError)."""
        pgd = self.mode.currentData() == "pgd"
        return TraversalConfig(
            steps=int(self.max_steps.value()),
            step_size=float(self.step_size.value()),
            norm=self.norm.currentData(),
            eps=float(self.eps.value()) if pgd else None,
            objective=self.objective.currentData(),
            random_start=bool(pgd and self.random_start.isChecked()),
            stop_at_prob=float(self.stop_at.value()) if self.stop_enabled.isChecked() else None,
            seed=int(self.seed.value()),
        )

    def set_config(self, config: TraversalConfig) -> bool:
        """Show ``config`` in the widgets; one ``settings_changed`` is emitted at the end.

        Returns
        -------
        bool : True when the widgets now give back exactly ``config`` (False when, e.g., a
        step size has more decimals than the spin box shows).

        Raises
        ------
        ValueError : more steps than the window keeps.
        """
        if config.steps > MAX_UI_STEPS:
            raise ValueError(f"{config.steps} steps: the window keeps at most {MAX_UI_STEPS}")
        blockers = [QSignalBlocker(w) for w in (
            self.mode, self.norm, self.step_size, self.eps, self.random_start, self.max_steps,
            self.objective, self.stop_enabled, self.stop_at, self.seed)]
        self.mode.setCurrentIndex(self.mode.findData("traversal" if config.eps is None else "pgd"))
        self.norm.setCurrentIndex(self.norm.findData(config.norm))
        self.step_size.setValue(config.step_size)
        if config.eps is not None:
            self.eps.setValue(config.eps)
        self.random_start.setChecked(config.random_start)
        self.max_steps.setValue(config.steps)
        self.objective.setCurrentIndex(self.objective.findData(config.objective))
        self.stop_enabled.setChecked(config.stop_at_prob is not None)
        if config.stop_at_prob is not None:
            self.stop_at.setValue(config.stop_at_prob)
        self.seed.setValue(config.seed)
        del blockers
        self.stop_at.setEnabled(self.stop_enabled.isChecked())
        self._update_enabled()
        self.settings_changed.emit()
        return self.config() == config
