"""Soak test: many traversals in a row, in the engine and through the window; does memory grow?

Not part of the test suite (it takes a minute or two). Runs 1,000 consecutive traversals
with the shipped models in the engine, then 50 runs through the main window (offscreen),
and prints the resident memory (RSS) at the start and the end of each phase, and the
growth in percent. The start is measured after a few warm-up runs, because the first runs
allocate torch's and Qt's caches once; the growth target is under 5 %.

    nice -n 19 python benchmarks/bench_soak.py [--engine-runs 1000] [--gui-runs 50] [--steps 20]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time


def rss_mib() -> float:
    """The resident set size of this process now (not its peak), in MiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark needs Linux)")


def _report(name: str, runs: int, seconds: float, start: float, end: float) -> float:
    growth = 100 * (end - start) / start
    print(f"{name}: {runs} runs in {seconds:.1f} s; RSS after warm-up {start:.1f} MiB, "
          f"at the end {end:.1f} MiB, growth {growth:+.2f} % ({'ok' if growth < 5 else 'OVER 5 %'})")
    return growth


def _measure(one_run, runs: int, warmup: int) -> tuple[float, float]:
    """Call ``one_run(i)`` warmup + runs times; (seconds, RSS in MiB) from after the warm-up."""
    start = None
    t0 = time.perf_counter()
    for i in range(warmup + runs):
        if i == warmup:
            gc.collect()
            start = rss_mib()
            t0 = time.perf_counter()
        one_run(i)
    return time.perf_counter() - t0, start


def soak_engine(runs: int, steps: int, warmup: int) -> float:
    import numpy as np

    from trav_gui.engine.core.traversal import TraversalConfig, stack_frames, traverse
    from trav_gui.engine.data.datasets import test_digits
    from trav_gui.engine.models.loading import load_model

    images, labels = test_digits()
    models = [load_model("robust"), load_model("standard")]
    config = TraversalConfig(steps=steps, step_size=0.2)

    def one_run(i: int) -> None:
        index = i % len(images)
        x0 = images[index].astype(np.float32) / 255
        target = (int(labels[index]) + 1 + i % 9) % 10
        arrays = stack_frames(list(traverse(models, x0, target, config)))
        assert arrays["images"].shape[0] == steps + 1

    seconds, start = _measure(one_run, runs, warmup)
    gc.collect()
    return _report(f"engine ({steps} steps, 2 models)", runs, seconds, start, rss_mib())


def soak_gui(runs: int, steps: int, warmup: int) -> float:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from trav_gui.qt.window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow(device="cpu")
    window.show()
    window.settings.max_steps.setValue(steps)
    window.settings.step_size.setValue(0.2)

    def one_run(i: int) -> None:
        window.input_panel.pick_example(i * 37 % 10_000)
        window.set_target(i % 10)
        loop = QEventLoop()
        window.run_finished.connect(loop.quit)
        QTimer.singleShot(60_000, loop.quit)
        assert window.play()
        loop.exec()
        window.run_finished.disconnect(loop.quit)
        assert window.history is not None and len(window.history) == steps + 1, "run did not finish"
        app.processEvents()

    seconds, start = _measure(one_run, runs, warmup)
    while window.runs.threads():  # let the last worker thread end and be deleted
        app.processEvents()
    gc.collect()
    end = rss_mib()
    window.close()
    return _report(f"GUI ({steps} steps, 2 models, offscreen)", runs, seconds, start, end)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine-runs", type=int, default=1000)
    p.add_argument("--gui-runs", type=int, default=50)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print(f"RSS at process start (torch imported): {rss_mib():.1f} MiB")
    engine = soak_engine(args.engine_runs, args.steps, args.warmup)
    gui = soak_gui(args.gui_runs, args.steps, args.warmup)
    print(f"RSS at process end: {rss_mib():.1f} MiB")
    return 0 if engine < 5 and gui < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
