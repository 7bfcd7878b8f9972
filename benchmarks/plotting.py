"""matplotlib for the benchmarks' plots, headless, or None (with a note) where it is not installed."""

from __future__ import annotations

import sys


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or None if matplotlib is missing (``pip install -e ".[bench]"``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return None
    return plt
