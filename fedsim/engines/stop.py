"""Ending a run early: one flag that every wait of the round loop checks.

Flower's simulation runtime runs the ServerApp (fedsim's round loop) in a non-daemon
thread beside the Ray backend in the main thread. When the main thread's part ends for any
reason (a signal, Ray failing to start, the actor pool crashing), nothing tells that thread,
so the launcher sets a :class:`StopFlag` and the loop's waits raise :class:`RunStopped` out
of it. Under ``flwr run`` the flag is never set and the waits' own deadlines apply.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(RuntimeError):
    """The run was told to stop (a signal, or its runtime ended); raised out of the loop's waits.

    The launcher re-raises it with ``signum`` (the signal, if one caused it) and
    ``last_round`` (the last round whose checkpoint was written) filled in.
    """

    def __init__(self, reason: str, *, signum: int | None = None, last_round: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.signum, self.last_round = reason, signum, last_round


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by the first SIGINT or SIGTERM while the runtime runs."""


class StopFlag:
    """Set once, with the reason (and the signal, if one caused it); later sets are ignored."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.signum: int | None = None

    def set(self, reason: str, signum: int | None = None) -> None:
        """Ask the run to stop; the first reason wins."""
        if not self._event.is_set():
            self.reason, self.signum = reason, signum
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`RunStopped` if the run was told to stop."""
        if self._event.is_set():
            raise RunStopped(self.reason)

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``; raise :class:`RunStopped` as soon as the flag is set."""
        self._event.wait(seconds)
        self.check()


class SignalsStop:
    """While active, SIGINT and SIGTERM set ``flag``; the first one while ``armed`` also raises
    :class:`Interrupted` in the main thread, to leave Flower's runtime at once. Later signals
    only set the flag, so cleanup is never cut short. ``reinstall()`` takes the handlers back
    after a library (Ray) replaced them."""

    def __init__(self, flag: StopFlag) -> None:
        self.flag = flag
        self.armed = True
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.flag.set(f"interrupted by {signal.Signals(signum).name}", signum)
        if self.armed:
            self.armed = False  # once only: a later signal must not cut the cleanup short
            raise Interrupted()

    def reinstall(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                previous = signal.signal(signum, self._handle)
                self.previous.setdefault(signum, previous)

    @contextlib.contextmanager
    def active(self) -> Iterator[SignalsStop]:
        """Install the handlers (main thread only) and restore the previous ones on exit."""
        self.reinstall()
        try:
            yield self
        finally:
            self.armed = False
            for signum, previous in self.previous.items():
                signal.signal(signum, previous)  # type: ignore[arg-type]
