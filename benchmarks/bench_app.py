"""The desktop app's speed: steps per second against the bare engine, GUI latency, start-up.

    python benchmarks/bench_app.py [--steps 400] [--repeats 3] [--models realistic robust standard]
                                   [--compute process thread]

Prints, on the shipped robust and standard models (or ``--models``) and MNIST test digit 15
(target 0):

- the engine's own steps per second for the models in lock-step (a plain loop over
  ``traverse``, no GUI), and the app's steps per second at full speed (from Play to the end
  of the run, in a real ``MainWindow`` drawing as it goes), and their ratio (target >= 0.85, and >= 300 steps/s),
  with realism on first (what users run), then off; for each ``--compute``: the runs computed
  in the app's compute process (as the app does) or in a thread of the window's process
  (as it did before), alternating in one process, one window each;
- the latency of the GUI thread during the app's run: a 10 ms ``QTimer`` records how late
  each of its ticks fires (target: the worst under 50 ms);
- start-up: seconds from launching ``python main.py``'s code in a fresh process to a shown
  window whose event loop answers (target < 3 s), and where they go (imports of torch and
  Qt, loading the models, building the window).

Runs offscreen unless a display is set (``DISPLAY=:99`` under Xvfb measures real drawing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

STARTUP_CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
marks = {}
import torch
marks["import torch"] = time.perf_counter() - t0
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QTimer
app = QApplication(sys.argv)
marks["import Qt + QApplication"] = time.perf_counter() - t0
import pyqtgraph as pg
from trav_gui.qt.window import MainWindow
marks["import pyqtgraph + app modules"] = time.perf_counter() - t0
from trav_gui.engine.core.threads import configure_torch_threads
from trav_gui.qt.app import FIRST_EXAMPLE
configure_torch_threads()
window = MainWindow()
window.input_panel.pick_example(FIRST_EXAMPLE)
marks["build window (load models, digits)"] = time.perf_counter() - t0
window.show()
def answered():
    marks["shown, event loop answering"] = time.perf_counter() - t0
    print(json.dumps(marks), flush=True)
    app.quit()
QTimer.singleShot(0, answered)
app.exec()
"""


def engine_steps_per_second(models, x0, target, steps: int) -> float:
    from trav_gui.engine.core.traversal import TraversalConfig, traverse

    t0 = time.perf_counter()
    for _ in traverse(models, x0, target, TraversalConfig(steps=steps, step_size=0.1)):
        pass
    return steps / (time.perf_counter() - t0)


def load_models(names):
    from trav_gui.engine.models.loading import load_model

    return [load_model(n) for n in names]


def app_run(window, steps: int) -> tuple[float, list[float]]:
    """Play one run at full speed; (steps per second, lateness of each 10 ms GUI tick in ms)."""
    from PySide6.QtCore import QEventLoop, QTimer

    window.reset()
    window.settings.max_steps.setValue(steps)
    late: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        late.append(1000 * (now - last[0]) - 10.0)
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    window.run_finished.connect(loop.quit)
    timer.start()
    last[0] = time.perf_counter()
    t0 = time.perf_counter()
    window.play()
    loop.exec()
    elapsed = time.perf_counter() - t0
    timer.stop()
    window.run_finished.disconnect(loop.quit)
    return steps / elapsed, late


def startup(repeats: int) -> list[dict]:
    env = dict(os.environ)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", STARTUP_CHILD], capture_output=True, text=True, env=env,
                             check=True)
        wall = time.perf_counter() - t0
        marks = json.loads(out.stdout.strip().splitlines()[-1])
        marks["process launch to answering window (wall)"] = wall
        runs.append(marks)
    return runs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--realism", choices=["on", "off", "both"], default="both",
                   help="the app's realism readout (judge + nearest real image, computed in the worker): "
                        "measure with it, without it, or both (alternating, same process)")
    p.add_argument("--models", nargs="+", default=["robust", "standard"], help="shipped models (columns)")
    p.add_argument("--compute", nargs="+", choices=["process", "thread"], default=["process"],
                   help="where the app computes its runs: its compute process (the app's way) or a thread")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from PySide6.QtWidgets import QApplication

    from trav_gui.engine.core.threads import configure_torch_threads

    configure_torch_threads()  # as the app does
    app = QApplication.instance() or QApplication(sys.argv)
    from trav_gui.engine.data.datasets import test_digits
    from trav_gui.engine.models.loading import resolve_model_path
    from trav_gui.qt.plots import configure_pyqtgraph
    from trav_gui.qt.window import MainWindow

    configure_pyqtgraph()  # as the app does: antialiased curves
    images, _ = test_digits()
    x0 = images[15].astype(np.float32) / 255.0
    models = load_models(args.models)
    windows = {}
    for compute in args.compute:
        window = windows[compute] = MainWindow(compute=compute)
        window.resize(1600, 1000)
        window.show()
        window.selector.set_selected([str(resolve_model_path(n)) for n in args.models])
        window.input_panel.pick_example(15)
        window.set_target(0)
    app.processEvents()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, platform "
          f"{QApplication.platformName()}, {args.steps} steps, {' + '.join(args.models)}, test digit 15 -> 0")

    modes = [(c, r) for c in args.compute for r in {"on": [True], "off": [False], "both": [True, False]}[args.realism]]
    engine_sps, app_sps, lateness = [], {m: [] for m in modes}, {m: [] for m in modes}
    engine_steps_per_second(models, x0, 0, 20)  # warm-up
    for window in windows.values():
        app_run(window, 20)
    for _ in range(args.repeats):
        engine_sps.append(engine_steps_per_second(models, x0, 0, args.steps))
        for mode in modes:  # alternating, so that a change of machine load hits every mode
            window = windows[mode[0]]
            window.realism_action.setChecked(mode[1])
            sps, late = app_run(window, args.steps)
            app_sps[mode].append(sps)
            lateness[mode] += late
    e = statistics.median(engine_sps)
    print(f"engine alone: {e:.0f} steps/s  [median of {args.repeats}]")
    for mode in modes:
        a = statistics.median(app_sps[mode])
        lat = np.array(lateness[mode])
        label = f"computing in {'its compute process' if mode[0] == 'process' else 'a thread'}, " + \
            ("with realism" if mode[1] else "without realism")
        print(f"app at full speed, {label}: {a:.0f} steps/s; ratio {a / e:.2f} "
              f"(target >= 0.85, >= 300 steps/s)  [median of {args.repeats}]")
        print(f"  GUI thread during those runs: {len(lat)} ticks of a 10 ms timer, late by median "
              f"{np.median(lat):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, worst {lat.max():.1f} ms "
              f"(target: worst < 50 ms)")
    for compute in args.compute:
        if (compute, True) in app_sps and (compute, False) in app_sps:
            on, off = statistics.median(app_sps[(compute, True)]), statistics.median(app_sps[(compute, False)])
            print(f"realism costs the app ({compute}) {100 * (1 - on / off):.1f} % of its steps/s (target <= 10 %)")
    for window in windows.values():
        window.close()

    if args.no_startup:
        return
    runs = startup(args.repeats)
    print(f"start-up, fresh process, median of {args.repeats} (cumulative seconds):")
    for key in runs[0]:
        print(f"  {key:<45} {statistics.median(r[key] for r in runs):6.2f} s")


if __name__ == "__main__":
    main()
