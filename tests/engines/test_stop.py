"""The stop flag and the signal handlers that set it (no Ray)."""

import os
import signal

import pytest

from fedsim.engines.stop import Interrupted, RunStopped, SignalsStop, StopFlag


def test_first_signal_interrupts_once_later_ones_only_leave_the_flag_set():
    flag = StopFlag()
    before = signal.getsignal(signal.SIGTERM)

    with SignalsStop(flag).active():
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 1.0)  # let the handler run
        os.kill(os.getpid(), signal.SIGINT)  # during cleanup: no exception
        signal.sigtimedwait([], 0.1)

    assert flag.signum == signal.SIGTERM and flag.reason == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_flag_keeps_its_first_reason_and_raises_from_waits():
    flag = StopFlag()
    flag.set("the simulation runtime stopped")
    flag.set("interrupted by SIGINT", signal.SIGINT)

    with pytest.raises(RunStopped, match="the simulation runtime stopped"):
        flag.sleep(10)
    assert flag.signum is None
