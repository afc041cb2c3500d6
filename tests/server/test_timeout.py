"""Round timeouts: they start when the workers are ready (not when Ray starts), a timed-out
round's leftover work is dropped rather than queued before the next round, and a run whose
every round was skipped fails (exit 3) instead of passing off the initial model as a result."""

import json
import time

import pytest
from typer.testing import CliRunner

from fedsim.cli import app as cli
from fedsim.client.app import train, train_cohort
from fedsim.config import load_config
from fedsim.launcher import simulate
from fedsim.server.loop import copy_arrays
from tests.conftest import resident_of, round_of
from tests.server.conftest import read_rows

TINY = {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 4,
        "federation.clients_per_round": 4, "federation.rounds": 3, "evaluation.every": 3}


@pytest.mark.own_ray
@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ["cohort", "flower"])
def test_one_second_round_timeout_loses_no_round_to_start_up(engine, tmp_path):
    exp = load_config(None, {**TINY, "engine.name": engine, "federation.round_timeout": 1.0})

    summary = simulate(exp, str(tmp_path / "run"), quiet=True)

    assert summary["first_round_start_seconds"] > 1.0  # start-up alone outlasts the timeout
    rows = read_rows(tmp_path / "run")[1:]
    assert [(r["clients_ok"], r["failed"], r["skipped"]) for r in rows] == [(4, {}, False)] * 3


def test_cohort_worker_past_its_deadline_trains_nobody_else():
    exp = load_config(None, TINY)
    resident = resident_of(exp)
    global_arrays = copy_arrays(resident.task.build_model())
    began = time.perf_counter()

    content = train_cohort(resident, global_arrays, [0, 1, 2, 3], round_of(exp, 1), None, deadline=time.time() - 1)

    assert time.perf_counter() - began < 1.0
    metrics = content["metrics"]
    assert metrics["num-clients"] == 0 and metrics["failed:timeout"] == 4
    assert content["errors"]["timeout"] == "the round's time was up before client 0 started (4 of 4 clients not trained)"


def test_train_message_that_expired_in_the_queue_is_not_trained():
    from flwr.app import ConfigRecord, MessageType, Metadata, RecordDict
    from flwr.app.message import make_message
    from flwr.common.constant import ErrorCode

    # made 1 s ago with 0.5 s to live: its round is over by the time a worker takes it
    metadata = Metadata(run_id=1, message_id="m", src_node_id=0, dst_node_id=1, reply_to_message_id="",
                        group_id="1", created_at=time.time() - 1, ttl=0.5, message_type=MessageType.TRAIN)
    msg = make_message(metadata=metadata, content=RecordDict({"config": ConfigRecord({"unused": 0})}))

    reply = train(msg, None)  # nothing is read: no model, no data, no training

    assert reply.has_error() and reply.error.code == ErrorCode.MESSAGE_UNAVAILABLE


@pytest.mark.timeout(300)
def test_run_whose_every_round_was_skipped_exits_3(tmp_path):
    run_dir = tmp_path / "run"
    args = ["run", "--quiet", "--task", "synthetic", "--model", "mlp", "--clients", "4",
            "--clients-per-round", "4", "--rounds", "2", "--out", str(run_dir),
            "--set", "faults={exception: [0, 1, 2, 3]}"]  # fewer rounds than max_failed_rounds (3)

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 3, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: run aborted: all 2 rounds were skipped")
    assert json.loads((run_dir / "summary.json").read_text())["rounds_skipped"] == 2
    rows = read_rows(run_dir)[1:]
    assert [r["failed"] for r in rows] == [{"client-exception": 4}] * 2
    # the cohort engine names the exception, not just its count
    assert all(r["errors"]["client-exception"].startswith("InjectedClientError: injected failure in client ")
               for r in rows)
