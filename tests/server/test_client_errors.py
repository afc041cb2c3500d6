"""A failing client is reported by exception type and message (first per reason), for both
reply shapes, with the traceback kept for ``--verbose``; Flower's own error text is condensed
to one line. In-process: the real ClientApp handler and the real server folding."""

import pytest
from fedsim.client.app import train, train_cohort
from fedsim.records import REPLY_SUMS, REPLY_WEIGHTS
from fedsim.config import load_config
from fedsim.server.loop import copy_arrays
from fedsim.server.replies import RoundTally, fold_content, fold_reply, split_error
from tests.conftest import resident_of, round_of, train_message

TINY = {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 4,
        "federation.clients_per_round": 4, "faults": {"exception": [1, 3]}}
FIRST = "InjectedClientError: injected failure in client 1"


@pytest.fixture(scope="module")
def setup():
    exp = load_config(None, TINY)
    resident = resident_of(exp)
    return exp, resident, copy_arrays(resident.task.build_model())


def test_cohort_reply_names_the_first_exception_of_each_reason(setup):
    exp, resident, global_arrays = setup
    acc = resident.strategy.new_accumulator(global_arrays, 1)
    tally = RoundTally()

    content = train_cohort(resident, global_arrays, [0, 1, 2, 3], round_of(exp, 1), None)
    fold_content(content, [0, 1, 2, 3], acc, REPLY_SUMS, tally)

    assert tally.ok == 2 and dict(tally.failed) == {"client-exception": 2}
    assert tally.as_record()["errors"] == {"client-exception": FIRST}
    assert tally.tracebacks["client-exception"].startswith("Traceback (most recent call last):")
    assert "raise InjectedClientError" in tally.tracebacks["client-exception"]


def test_flower_reply_of_a_failing_client_is_an_error_naming_type_and_message(setup):
    exp, resident, global_arrays = setup
    acc = resident.strategy.new_accumulator(global_arrays, 1)
    tally = RoundTally()

    reply = train(train_message(exp, global_arrays, [1], REPLY_WEIGHTS), None)  # raises inside: no exception out
    fold_reply(reply, [1], acc, REPLY_WEIGHTS, tally)

    assert reply.has_error()
    assert dict(tally.failed) == {"client-exception": 1}
    assert tally.errors == {"client-exception": FIRST}
    assert "Traceback (most recent call last):" in tally.tracebacks["client-exception"]


@pytest.mark.parametrize("text, line", [
    # case: Flower's own wrapping of an exception it caught (e.g. a Ray actor that died)
    ("<class 'ray.exceptions.ActorDiedError'>:<'The actor died unexpectedly.\n  more detail'>",
     "ActorDiedError: The actor died unexpectedly."),
    # case: Flower's ClientAppException, whose message starts with a newline
    ("<class 'flwr.clientapp.client_app.ClientAppException'>:<'\nException ClientAppException occurred. "
     "Message: boom'>", "ClientAppException: Exception ClientAppException occurred. Message: boom"),
    # case: fedsim's "Type: message" then the traceback
    ("ValueError: bad shape\nTraceback (most recent call last):\n  ...", "ValueError: bad shape"),
])
def test_error_text_becomes_one_line(text, line):
    assert split_error(text)[0] == line
