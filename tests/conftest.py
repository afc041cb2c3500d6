"""Shared test helpers: one factory for client updates, tiny models as state dicts."""

from __future__ import annotations

import pytest
import torch

from fedsim.strategies.base import ClientUpdate


def make_update(client_id: int, n: int = 10, loss: float = 1.0, **arrays: object) -> ClientUpdate:
    """A client update whose tensors are given as keyword lists, e.g. ``w=[1.0, 2.0]``."""
    tensors = {k.replace("__", "."): torch.as_tensor(v) for k, v in arrays.items()}
    return ClientUpdate(client_id=client_id, arrays=tensors, num_examples=n, metrics={"loss": loss})


def resident_of(exp):
    """The ClientApp's resident task/model/strategy for ``exp``, as a worker builds it from the
    run record (with the experiment's data folder as the node's own)."""
    from fedsim.client.app import Resident
    from fedsim.records import RunSpec

    return Resident(RunSpec.from_experiment(exp), data_dir=exp.task.data_dir)


def round_of(exp, server_round: int, client_ids=(), reply: str = "sums", aggregation: int | None = None):
    """The round context the server sends for ``exp``'s round ``server_round`` (built by the
    server's own :meth:`~fedsim.records.RoundContext.for_round`)."""
    from fedsim.factory import build_strategy
    from fedsim.records import RoundContext

    strategy = build_strategy(exp.strategy.name, exp.strategy.params, task=exp.task.name, seed=exp.seed,
                              dp_clip=exp.strategy.dp_clip, dp_noise=exp.strategy.dp_noise)
    return RoundContext.for_round(exp, strategy, server_round, aggregation=aggregation or server_round,
                                  reply=reply, client_ids=tuple(client_ids))


def train_message(exp, global_arrays, client_ids, reply: str, server_round: int = 1, *,
                  created_at: float | None = None, ttl: float = 600.0):
    """A train message as the round loop sends it (arrays, run and round records)."""
    import time

    from flwr.app import ArrayRecord, ConfigRecord, MessageType, Metadata, RecordDict
    from flwr.app.message import make_message

    from fedsim import records as R
    from fedsim.records import RunSpec

    metadata = Metadata(run_id=1, message_id="m", src_node_id=0, dst_node_id=1, reply_to_message_id="",
                        group_id=str(server_round), created_at=time.time() if created_at is None else created_at,
                        ttl=ttl, message_type=MessageType.TRAIN)
    content = RecordDict({
        R.ARRAYS: ArrayRecord(global_arrays), R.RUN: ConfigRecord(RunSpec.from_experiment(exp).to_record()),
        R.ROUND: ConfigRecord(round_of(exp, server_round, client_ids, reply).to_record())})
    return make_message(metadata=metadata, content=content)


@pytest.fixture(scope="session")
def _kept_cluster():
    """One local Ray cluster and its worker actors for every in-process run of the session
    (see :mod:`fedsim.engines.warm`): a run pays Ray's start-up once per session, not per test."""
    from fedsim.engines.warm import warm_cluster

    with warm_cluster():
        yield


@pytest.fixture(autouse=True)
def _ray_for_this_test(request):
    """Tests marked ``own_ray`` (start-up, signals, attach, process trees) start and stop Ray
    themselves; the others' in-process runs share the session's kept cluster."""
    if request.node.get_closest_marker("own_ray") is not None:
        from fedsim.engines.warm import suspended

        with suspended():
            yield
        return
    request.getfixturevalue("_kept_cluster")
    yield


def run_fedsim(cmd: list[str], **subprocess_options: object):
    """``subprocess.run([python, "-m", "fedsim", ...])`` run in this process instead (same
    arguments; the subprocess options are ignored): for tests of what a run produces, not of
    the process itself, so their runs use the session's kept Ray cluster."""
    import subprocess
    import traceback

    from typer.testing import CliRunner

    from fedsim.cli import app

    args = list(cmd[cmd.index("fedsim") + 1:]) if "fedsim" in cmd else list(cmd)
    result = CliRunner().invoke(app, [str(a) for a in args])
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(cmd, result.exit_code, result.stdout, stderr)


# fixtures that run real `fedsim` processes (a bench's cells, an uninterrupted reference run)
SLOW_FIXTURES = {"tiny", "tiny_bench", "uninterrupted"}


def pytest_collection_modifyitems(config, items):
    """``slow``: tests with their own Ray (``own_ray``) or a process-running fixture, besides
    those marked by hand; ``make test-fast`` (``-m "not slow"``) leaves them out. The ``own_ray``
    tests run last: each shuts the kept cluster down, and the next in-process run would start
    it again (a Ray start-up per own_ray test in the middle of the session).

    Under pytest-xdist (``make test`` runs ``-n 2``) each worker process is a session of its
    own, with its own kept cluster, and tests are handed out one by one. Grouping them was
    tried and does nothing with pytest 9.2: ``--dist loadgroup``'s ``xdist_group`` marks
    work by renaming ``item._nodeid`` (xdist 3.8), which pytest 9.2's ``nodeid`` no longer
    reads. ``--dist loadfile`` grouped by module but took longer (over 700 s against 669 s)."""
    for item in items:
        if item.get_closest_marker("own_ray") or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is not None)  # stable: order kept otherwise
