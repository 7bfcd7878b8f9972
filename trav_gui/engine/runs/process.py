"""The app's compute process: live traversals run there, so that drawing never holds them up.

In one process, the traversal (in a thread) and the window's drawing share Python's
interpreter lock: every millisecond the GUI thread spends in pyqtgraph's Python is one the
traversal waits for between two torch calls, so on a 2-core laptop-class CPU the app reached
only 0.71-0.81x the bare engine's steps per second even with drawing held to a few redraws a
second (benchmarks/bench_app.py, docs/BENCHMARKS.md). In a process of its own the traversal
has its own lock; frames are small (a few kB a step), so sending them costs little.

:class:`ComputeProcess` is the parent's handle. :meth:`ComputeProcess.start` launches the child
(``python -m trav_gui.engine.runs.child``) and returns at once: the child imports torch
while the window builds. It runs one :class:`~trav_gui.engine.runs.live.LiveRun` at a time,
each a :class:`RunJob` that names its models by path (the child loads them once and keeps
them). :meth:`ComputeProcess.play` makes a :class:`RemoteRun`, whose controls (stop, pause,
resume, single step, speed) mirror ``LiveRun``'s and whose :meth:`RemoteRun.events`, read in
a thread of the caller's, sends the job and yields what the run produces. A child that dies
ends its run as failed, with its exit code; the next run starts a new child.

The child is a plain ``python -m`` process, not a ``multiprocessing`` one: a spawned
``multiprocessing`` child re-imports the parent's ``__main__`` (a user's script calling
``trav_gui.show()``, or ``python -m trav_gui``), which re-runs it when it is not guarded.
The two talk over a ``multiprocessing.connection`` (a local socket or named pipe, with a
random key the child reads from its standard input). The child's standard input stays open
as a lifeline: when the app ends, however it ends, the child sees it close and exits.

Messages, each a tuple: parent -> child ``("run", run_id, job)``, ``(control, run_id[, value])``
with control one of stop, pause, resume, step, speed, and ``("quit",)``; child -> parent
``("frames", run_id, frames)``, ``("realism", run_id, indices, realism)``,
``("failed", run_id, message)`` and, always last for a run, ``("finished", run_id, reason)``.
"""

from __future__ import annotations

import os
import queue
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from multiprocessing.connection import Client, Listener
from typing import Iterator

import numpy as np

from trav_gui.engine.core.threads import configure_torch_threads
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.models.cache import ModelCache
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.realism import Scorers
from trav_gui.engine.runs.live import LiveRun, RunControls

__all__ = ["ComputeProcess", "ComputeProcessError", "RemoteRun", "RunJob"]

QUIT_WAIT_S = 3.0


class ComputeProcessError(RuntimeError):
    """The compute process ended, or could not start, while a run needed it."""


@dataclass(frozen=True)
class RunJob:
    """One live traversal, as the compute process needs it: everything by value or by path.

    model_paths : the models' files (``.safetensors``, ``.onnx``, ``.recipe``), loaded once by the child.
    x0 : the start, grey (H, W) or colour (3, H, W), float32 in [0, 1].
    realism : the data set whose judge and reference images score the frames, or None.
    device : where the models run (``"cpu"``, ``"cuda"``...).
    """

    model_paths: tuple[str, ...]
    x0: np.ndarray
    target: int
    config: TraversalConfig
    paused: bool = False
    steps_per_second: float | None = None
    realism: str | None = None
    device: str = "cpu"


# ---------------------------------------------------------------------------- the child


class _PipeSink:
    """A LiveRun's sink in the child: everything goes to the parent, tagged with the run id."""

    def __init__(self, conn, run_id: int) -> None:
        self._conn, self._run_id = conn, run_id

    def frames(self, frames) -> None:
        self._conn.send(("frames", self._run_id, frames))

    def realism(self, indices, realism) -> None:
        self._conn.send(("realism", self._run_id, indices, realism))

    def failed(self, message: str) -> None:
        self._conn.send(("failed", self._run_id, message))


def _read_controls(conn, jobs: queue.Queue, controls: dict[int, RunControls]) -> None:
    """The child's reader thread: queues runs, applies controls at once, ends on quit or a closed pipe."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the app is gone: so is this process
            os._exit(0)
        kind, rest = message[0], message[1:]
        if kind == "quit":
            for c in list(controls.values()):
                c.stop()
            jobs.put(None)
            return
        if kind == "run":
            run_id, job = rest
            controls[run_id] = RunControls(job.paused, job.steps_per_second)
            jobs.put((run_id, job))
            continue
        c = controls.get(rest[0])
        if c is None:
            continue  # a control for a run already ended
        if kind == "speed":
            c.set_steps_per_second(rest[1])
        else:
            {"stop": c.stop, "pause": c.pause, "resume": c.resume, "step": c.step_once}[kind]()


def serve(key: bytes) -> None:  # pragma: no cover - runs in the child (the tests drive it through the parent)
    """The compute process (:mod:`.child` calls this): listen, take the parent's connection
    (authenticated with ``key``), then compute the runs it sends until it quits or goes."""
    with Listener(authkey=key) as listener:
        print(listener.address, flush=True)
        conn = listener.accept()
    configure_torch_threads()
    jobs: queue.Queue = queue.Queue()
    controls: dict[int, RunControls] = {}  # the run being computed and those queued
    threading.Thread(target=_read_controls, args=(conn, jobs, controls), name="compute-reader", daemon=True).start()
    caches: dict[str, ModelCache] = {}
    scorers: dict[str, Scorers] = {}
    while (item := jobs.get()) is not None:
        run_id, job = item
        sink, c, reason = _PipeSink(conn, run_id), controls[run_id], "stopped"
        try:
            if not c.stopped:
                cache = caches.setdefault(job.device, ModelCache(job.device))
                models = [cache.get(p) for p in job.model_paths]
                scorer = None
                if job.realism is not None:
                    scorer = scorers.setdefault(job.device, Scorers(job.device)).get(job.realism)
                reason = LiveRun(models, job.x0, job.target, job.config, scorer=scorer, controls=c).run(sink)
        except Exception as exc:  # noqa: BLE001 - a model that cannot load: the run fails, with the reason
            sink.failed(str(exc) if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}")
            reason = "failed"
        controls.pop(run_id, None)
        conn.send(("finished", run_id, reason))
    conn.close()


# ---------------------------------------------------------------------------- the parent


def _child_environment() -> dict[str, str]:
    """The child's environment: the parent's, with numpy's BLAS held to the cores torch uses
    there (one core is left to the window, as :func:`~trav_gui.engine.core.threads.configure_torch_threads`
    leaves it). The realism's nearest-real search is a matrix product; on all cores it took the
    window's core too, and a paint took twice its CPU time (47 ms for 24 ms, bench_app)."""
    threads = str(max(1, (os.cpu_count() or 2) - 1))
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, threads)
    # The child imports this package from where the parent did (a clone run without installing too).
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env



class RemoteRun:
    """One run of the compute process: its controls, and :meth:`events` to send it and read it.

    The controls may be called from any thread, before or while :meth:`events` is read (those
    made before the job is sent follow it); ``is_paused`` mirrors them.
    """

    def __init__(self, process: ComputeProcess, run_id: int, job: RunJob) -> None:
        self._process, self.run_id, self.job = process, run_id, job
        self._paused = job.paused
        self.stopped = False  # stop() was called: what is still on its way is dropped
        self.sent = False
        self.early: list[tuple] = []  # controls made before the job was sent
        self._state = threading.Lock()

    def _control(self, *message) -> None:
        self._process._control(self, (message[0], self.run_id, *message[1:]))

    def stop(self) -> None:
        self.stopped = True
        self._control("stop")

    def _pause(self, paused: bool, message: str) -> None:
        with self._state:
            self._paused = paused
        self._control(message)

    def pause(self) -> None:
        self._pause(True, "pause")

    def resume(self) -> None:
        self._pause(False, "resume")

    def step_once(self) -> None:
        self._pause(True, "step")

    def set_steps_per_second(self, steps_per_second: float | None) -> None:
        self._control("speed", steps_per_second or None)

    @property
    def is_paused(self) -> bool:
        with self._state:
            return self._paused

    def events(self) -> Iterator[tuple]:
        """Send the job (waiting for the run before it to end) and yield what the child sends of
        it, up to and including ``("finished", run_id, reason)``; blocks: read it in a thread.

        Raises :class:`ComputeProcessError` if the child ends, or cannot start.
        """
        return self._process._events(self)


class ComputeProcess:
    """The compute process, seen from the app: one child, one run at a time.

    :meth:`start` launches it (returns at once); :meth:`play` makes a run, which its
    :meth:`RemoteRun.events` sends and reads; :meth:`close` ends the child.
    """

    def __init__(self) -> None:
        self._child: subprocess.Popen | None = None
        self._conn = None
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()  # one run is sent and read at a time
        self._next_id = 0

    @property
    def alive(self) -> bool:
        return self._child is not None and self._child.poll() is None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        """Launch the child if none is running; returns at once."""
        with self._send_lock:
            if self.alive:
                return
            self._discard()
            key = secrets.token_bytes(32)
            # The child imports no Qt and none of the parent's own modules; its errors go where the app's go.
            self._child = subprocess.Popen([sys.executable, "-m", "trav_gui.engine.runs.child"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, env=_child_environment())
            self._child.stdin.write(key.hex() + "\n")
            self._child.stdin.flush()
            self._key = key

    def play(self, job: RunJob) -> RemoteRun:
        """A run of ``job`` (the child is started if it is not running); sent when its events are read."""
        self.start()
        with self._send_lock:
            self._next_id += 1
            return RemoteRun(self, self._next_id, job)

    def _connect(self) -> None:
        """Connect to the child once it listens (in a reader's thread: it may take a second)."""
        if self._conn is not None:
            return
        child = self._child
        address = child.stdout.readline().strip() if child is not None else ""
        if not address:
            code = child.wait(QUIT_WAIT_S) if child is not None else None
            raise ComputeProcessError(f"the compute process could not start (exit code {code})")
        self._conn = Client(address, authkey=self._key)

    def _control(self, run: RemoteRun, message: tuple) -> None:
        with self._send_lock:
            if run.sent:
                self._send_locked(message)
            else:
                run.early.append(message)

    def _send_locked(self, message: tuple) -> None:
        try:
            if self._conn is not None:
                self._conn.send(message)
        except (OSError, ValueError):
            pass  # the child is gone; the reader of its run learns it from the end of the pipe

    def _events(self, run: RemoteRun) -> Iterator[tuple]:
        with self._read_lock:
            if run.stopped:  # left before it was sent: never computed
                yield ("finished", run.run_id, "stopped")
                return
            try:
                self._connect()
            except (OSError, EOFError) as exc:
                raise ComputeProcessError(f"could not reach the compute process: {exc}") from None
            with self._send_lock:
                self._send_locked(("run", run.run_id, run.job))
                for message in run.early:
                    self._send_locked(message)
                run.sent, run.early = True, []
            conn = self._conn
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    child = self._child
                    code = child.wait(QUIT_WAIT_S) if child is not None else None
                    raise ComputeProcessError(
                        f"the compute process ended unexpectedly (exit code {code}); the next run starts a new one"
                    ) from None
                if message[1] != run.run_id:
                    continue  # the end of a run nobody reads any more
                yield message
                if message[0] == "finished":
                    return

    def close(self) -> None:
        """End the child: it finishes its current step, then exits (killed if it has not after 3 s).
        Call it once no run is being read."""
        with self._send_lock:
            self._send_locked(("quit",))
            self._discard()

    def _discard(self) -> None:
        child, conn = self._child, self._conn
        self._child = self._conn = None
        if child is not None:
            try:
                child.stdin.close()  # the lifeline: a child still starting exits on it too
            except OSError:
                pass
            try:
                child.wait(QUIT_WAIT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(QUIT_WAIT_S)
            child.stdout.close()
        if conn is not None:
            conn.close()


