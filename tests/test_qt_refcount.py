"""Guard against PySide6 6.12.0's refcount bug: every Signal.emit() dropped a reference to True.

On Python 3.11 (where True is not immortal) that release aborted the interpreter with
"bool_dealloc" after enough emits; pyproject excludes 6.12.0, and this test fails loudly if
an installed PySide6 has the bug again. The app emits a signal per batch of frames, so a
long run would otherwise crash the window.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

EMITS = 10_000


class _Emitter(QObject):
    flag_changed = Signal(bool)
    frame_ready = Signal(int, object)


def test_emitting_signals_does_not_leak_or_drop_references_to_true(qtbot):
    emitter = _Emitter()
    received = []
    emitter.flag_changed.connect(lambda value: received.append(value) if len(received) < 1 else None)
    emitter.frame_ready.connect(lambda rid, payload: None)
    payload = [True, False]
    before_true = sys.getrefcount(True)
    before_payload = sys.getrefcount(payload)
    for i in range(EMITS):
        emitter.flag_changed.emit(True)
        emitter.frame_ready.emit(i, payload)
    after_true = sys.getrefcount(True)
    # A dropped reference per emit would show as -10,000; allow a little noise from the interpreter.
    assert abs(after_true - before_true) < 100, (before_true, after_true)
    assert sys.getrefcount(payload) == before_payload
    assert received == [True]
