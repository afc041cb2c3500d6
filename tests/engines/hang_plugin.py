"""Test plugin (``plugins: [tests.engines.hang_plugin]``): the ``timeout`` fault makes its
client hang for good instead of sleeping just past the round timeout. Loaded by the driver
and every worker of a subprocess run only: never import it into the test process."""

import time

import fedsim.client.app as client_app
from fedsim.client.faults import apply_fault


def _hang_on_timeout(kind, update, *, timeout):
    while kind == "timeout":
        time.sleep(60)
    return apply_fault(kind, update, timeout=timeout)


client_app.apply_fault = _hang_on_timeout
