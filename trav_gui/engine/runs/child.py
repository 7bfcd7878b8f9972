"""The compute process's entry point: ``python -m trav_gui.engine.runs.child`` (see :mod:`.process`).

Its first lines import nothing heavy: the child reads its key, and starts its lifeline (a
thread that ends the process when standard input closes, which it does when the app ends,
whichever way it ends) before torch is imported, so that a window closed while the child is
still starting does not wait for it (it waited 1.2 s).
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the app's; the app's end ends this process
    key = bytes.fromhex(sys.stdin.readline().strip())
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), name="compute-lifeline", daemon=True).start()
    # lazy: torch and the engine load once the lifeline is up
    from trav_gui.engine.runs.process import serve

    serve(key)


if __name__ == "__main__":  # pragma: no cover - the child
    main()
