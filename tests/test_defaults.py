"""The app's settings panel and the engine agree: same defaults, same norms and objectives.

(The command line's side is in test_cli.py.)
"""

from __future__ import annotations

from trav_gui.engine.core.objectives import OBJECTIVE_DESCRIPTIONS, OBJECTIVES
from trav_gui.engine.core.steps import NORMS, make_step
from trav_gui.engine.core.traversal import DEFAULT_PGD_EPS, DEFAULT_STOP_AT_PROB, DEFAULTS, TraversalConfig
from trav_gui.qt.settings_panel import SettingsPanel


def _items(combo) -> dict:
    return {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}


def test_engine_names_and_descriptions_match():
    assert DEFAULTS == TraversalConfig()
    assert list(OBJECTIVE_DESCRIPTIONS) == list(OBJECTIVES)
    for norm in NORMS:
        assert make_step(norm, 0.1).norm == norm


def test_settings_panel_opens_on_the_engines_defaults(qtbot):
    panel = SettingsPanel()
    qtbot.addWidget(panel)
    assert panel.config() == TraversalConfig()
    assert panel.mode.currentData() == "traversal" and not panel.stop_enabled.isChecked()
    # the values offered when PGD or the stop are switched on
    assert panel.eps.value() == DEFAULT_PGD_EPS
    assert panel.stop_at.value() == DEFAULT_STOP_AT_PROB


def test_settings_panel_offers_the_engines_norms_and_objectives(qtbot):
    panel = SettingsPanel()
    qtbot.addWidget(panel)
    assert _items(panel.norm) == NORMS
    assert _items(panel.objective) == OBJECTIVE_DESCRIPTIONS
    for norm in NORMS:
        for objective in OBJECTIVES:
            config = TraversalConfig(norm=norm, objective=objective)
            assert panel.set_config(config) and panel.config() == config
