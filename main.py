"""Start the traversal visualizer: ``python main.py``."""

from trav_gui.qt.app import main

if __name__ == "__main__":
    raise SystemExit(main())
