"""The traversal's default settings and the names of its choices, without torch or numpy.

The command line's ``--help`` and argument errors read them before any engine module loads
(torch alone takes seconds to import). :class:`~trav_gui.engine.core.traversal.TraversalConfig`
takes its defaults from here; ``tests/test_cli.py`` checks that the names match the engine's
``NORMS`` and ``OBJECTIVES``.
"""

from __future__ import annotations

__all__ = ["NORM", "NORM_NAMES", "OBJECTIVE", "OBJECTIVE_NAMES", "SEED", "STEPS", "STEP_SIZE"]

STEPS = 200
STEP_SIZE = 0.1
NORM = "l2"
OBJECTIVE = "logprob"
SEED = 0
NORM_NAMES = ("l2", "linf")
OBJECTIVE_NAMES = ("logprob", "logit", "margin")
