"""Ctrl-C that Python would swallow, delivered to the main thread again.

Python runs some code where an exception cannot propagate: finalisers
(``Future.__del__`` releasing a key), garbage-collector callbacks (Dask's
``GCDiagnosis``, registered by a scheduler or nanny running in this process, runs
at every collection). A ``KeyboardInterrupt`` raised there is "unraisable":
Python prints "Exception ignored in" with a traceback, and the program goes on as
if Ctrl-C had never been pressed. While an embedded cluster starts and while a
run lasts, such code runs often enough for a Ctrl-C to land there.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from multiprocessing import resource_tracker
from typing import Any

REDELIVERY_DELAY = 0.01
"""Seconds after the swallowed Ctrl-C that it reaches the main thread again."""


class CtrlCNeverLost:
    """While held, an unraisable ``KeyboardInterrupt`` is raised again in the main
    thread, silently; any other unraisable exception goes to the hook that was
    there before. Holds nest (a cluster starting early, then the run): the hook is
    installed by the first and removed by the last.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._previous: Any = None

    @property
    def held(self) -> bool:
        """Whether the hook is installed."""
        return self._holders > 0

    def hold(self) -> None:
        """Install the hook, unless held already."""
        with self._lock:
            if not self._holders:
                self._previous = sys.unraisablehook
                sys.unraisablehook = self._hook
            self._holders += 1

    def release(self) -> None:
        """Undo one ``hold``; the last one puts the previous hook back."""
        with self._lock:
            if not self._holders:
                return
            self._holders -= 1
            if not self._holders and sys.unraisablehook == self._hook:
                sys.unraisablehook = self._previous

    def __enter__(self) -> CtrlCNeverLost:
        self.hold()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _hook(self, unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # Raised before this hook returns (in the main thread, Python checks
            # for it at once), it would be swallowed again: a thread of its own
            # raises it in the main thread a moment later.
            later = threading.Timer(REDELIVERY_DELAY, _thread.interrupt_main)
            later.daemon = True
            later.start()
        else:
            (self._previous or sys.__unraisablehook__)(unraisable)


ctrl_c_never_lost = CtrlCNeverLost()
"""The process's one guard: the hook is process-wide."""


def block_sigint() -> set[signal.Signals] | None:
    """Block SIGINT in the calling thread, for it and the threads and processes
    it starts; return the mask before (``None`` where there are no signal masks,
    on Windows).

    multiprocessing's resource tracker is started first: the first multiprocessing
    queue or lock a Nanny makes starts it, blocking SIGINT around spawning it and
    then unblocking it in that thread whatever it was before; the event loop's
    thread would then start the threads spawning the worker processes with SIGINT
    unblocked. Started here, before the block, it is already running then.
    """
    if not hasattr(signal, "pthread_sigmask"):
        return None
    resource_tracker.ensure_running()
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
