"""The Exporter without a window: a status bar, a real run's arrays and record, real files."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtWidgets import QStatusBar

from trav_gui.engine.core.traversal import TraversalConfig, stack_frames, traverse
from trav_gui.engine.runs import record as rec
from trav_gui.qt.export_job import Exporter

X0 = np.full((28, 28), 0.5, np.float32)


@pytest.fixture(scope="module")
def run():
    """(record, arrays) of a real 4-step run of one linear model."""
    from conftest import LinearModel

    config = TraversalConfig(steps=4, step_size=0.3)
    arrays = stack_frames(list(traverse([LinearModel(seed=0).eval()], X0, 3, config)))
    record = rec.build_run_record([rec.ModelRef("m", "a" * 64)], X0, 3, config, extra={"device": "cpu"})
    return record, arrays


@pytest.fixture
def exporter(qtbot):
    bar = QStatusBar()
    qtbot.addWidget(bar)
    ex = Exporter(bar)
    yield ex
    ex.wait()


class BlockingScorer:
    """Stands in for the realism scorer: ``fill_judge`` blocks until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def fill_judge(self, arrays) -> None:
        self.entered.set()
        self.release.wait(10)


def test_an_export_writes_the_run_reports_progress_and_ends_idle(qtbot, exporter, run, tmp_path):
    record, arrays = run
    values = []
    exporter.progress.valueChanged.connect(values.append)
    with qtbot.waitSignal(exporter.idle, timeout=30_000), \
            qtbot.waitSignal(exporter.export_finished, timeout=30_000) as finished:
        assert exporter.start(tmp_path / "out", record, arrays, ["m"])
        assert exporter.busy and not exporter.progress.isHidden() and not exporter.cancel_button.isHidden()
    assert finished.args == [str(tmp_path / "out")]
    assert rec.read_run_record(tmp_path / "out").target == 3
    assert {"steps.csv", "strip.png", "manifest.json"} <= {p.name for p in (tmp_path / "out").iterdir()}
    assert values and values == sorted(values) and values[-1] == exporter.progress.maximum() > 0
    assert not exporter.busy and exporter.progress.isHidden() and exporter.cancel_button.isHidden()


def test_one_export_at_a_time(qtbot, exporter, run, tmp_path):
    record, arrays = run
    scorer = BlockingScorer()
    assert exporter.start(tmp_path / "a", record, arrays, ["m"], scorer)
    assert not exporter.start(tmp_path / "b", record, arrays, ["m"])
    scorer.release.set()
    with qtbot.waitSignal(exporter.idle, timeout=30_000):
        pass
    assert not (tmp_path / "b").exists() and (tmp_path / "a" / "run.json").exists()


def test_cancel_reports_a_cancelled_export_and_writes_no_record(qtbot, exporter, run, tmp_path):
    record, arrays = run
    scorer = BlockingScorer()
    assert exporter.start(tmp_path / "out", record, arrays, ["m"], scorer)
    qtbot.waitUntil(scorer.entered.is_set, timeout=5000)  # the job is judging: cancel it mid-way
    with qtbot.waitSignal(exporter.idle, timeout=30_000), \
            qtbot.waitSignal(exporter.export_failed, timeout=30_000) as failed:
        exporter.cancel_button.click()
        scorer.release.set()
    assert failed.args == ["export cancelled; the files already written are complete"]
    assert not (tmp_path / "out" / "run.json").exists() and not exporter.busy


def test_a_folder_that_cannot_be_written_fails_with_a_message(qtbot, exporter, run, tmp_path):
    record, arrays = run
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with qtbot.waitSignal(exporter.export_failed, timeout=30_000) as failed:
        assert exporter.start(blocked, record, arrays, ["m"])
    assert failed.args[0].startswith(f"could not export into {blocked}")
    qtbot.waitUntil(lambda: not exporter.busy, timeout=5000)


def test_wait_leaves_no_thread_running(qtbot, exporter, run, tmp_path):
    record, arrays = run
    scorer = BlockingScorer()
    scorer.release.set()
    assert exporter.start(tmp_path / "out", record, arrays, ["m"], scorer)
    thread = exporter.job.thread
    exporter.wait()
    assert not thread.isRunning()
