"""The round wire: a client decodes a round from its flat records alone; other versions and
malformed records are refused with a message."""


import pytest
from flwr.app import ConfigRecord

from fedsim import records as R
from fedsim.client.app import train
from fedsim.config import load_config
from fedsim.records import RoundContext, RunSpec, WireError, flatten, unflatten
from fedsim.server.loop import copy_arrays
from tests.conftest import resident_of, round_of, train_message

TINY = {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 4,
        "federation.clients_per_round": 2, "federation.lr": 0.2, "federation.lr_schedule": "cosine",
        "federation.rounds": 4}


def test_nested_parameters_flatten_to_named_keys_and_back():
    params = {"modality_mix": {"image": 0.4, "audio": 0.4, "both": 0.2}, "temperature": 0.5,
              "sizes": [8, 16], "name": "x", "flag": True, "cap": None}

    flat = flatten("task.params", params)

    assert flat == {"task.params.modality_mix.image": 0.4, "task.params.modality_mix.audio": 0.4,
                    "task.params.modality_mix.both": 0.2, "task.params.temperature": 0.5,
                    "task.params.sizes": [8, 16], "task.params.name": "x", "task.params.flag": True,
                    "task.params.cap:none": True}
    assert unflatten("task.params", ConfigRecord(flat)) == params


@pytest.mark.parametrize("params, message", [
    ({"a.b": 1}, "without dots"),
    ({"mixed": [1, "a"]}, "lists of one scalar type"),
    ({"rows": [{"a": 1}]}, "lists of one scalar type"),
    ({"obj": object()}, "cannot travel"),
])
def test_values_that_cannot_travel_are_refused_by_name(params, message):
    with pytest.raises(WireError, match=message):
        flatten("task.params", params)


def test_run_record_round_trips_every_field():
    exp = load_config(None, {**TINY, "strategy.name": "fedvssl", "strategy.params": {"alpha": 0.9},
                             "strategy.dp_clip": None, "faults": {"nan": [3]}, "model.params": {"hidden": 16}})
    spec = RunSpec.from_experiment(exp)

    decoded = RunSpec.from_record(ConfigRecord(spec.to_record()))

    assert decoded == spec
    assert decoded.strategy_params == {"alpha": 0.9} and decoded.faults == {"nan": [3]}
    assert decoded.partitioning == {"kind": "dirichlet", "alpha": 0.5, "classes_per_client": 2}


def test_round_record_round_trips():
    ctx = RoundContext(server_round=3, aggregation=2, client_ids=(5, 9), reply=R.REPLY_SUMS, lr=0.125,
                       local_epochs=2, batch_size=16, seed=7, optimizer="repopt-sgd", momentum=0.9,
                       weight_decay=1e-4, round_timeout=None, params={"proximal-mu": 0.01, "mix": {"a": 1}})

    record = ctx.to_record()

    assert record["params.proximal-mu"] == 0.01 and record["params.mix.a"] == 1 and record["seed"] == 7
    assert RoundContext.from_record(ConfigRecord(record)) == ctx


def test_the_round_context_is_frozen():
    ctx = RoundContext(server_round=1, aggregation=1, client_ids=(0,), reply=R.REPLY_SUMS, lr=0.1,
                       local_epochs=1, batch_size=8, seed=0)

    with pytest.raises(AttributeError):
        ctx.lr = 0.2  # type: ignore[misc]


@pytest.mark.parametrize(("strategy", "params"), [
    ({"strategy.name": "fedavg"}, {}),  # case: a server-only rule sends nothing of its own
    ({"strategy.name": "fedprox", "strategy.params": {"mu": 0.25}}, {"proximal-mu": 0.25}),
    ({"strategy.name": "fedprox", "strategy.dp_clip": 1.0}, {"proximal-mu": 0.01}),  # case: under DP too
])
def test_the_server_builds_the_context_from_the_experiment_and_the_strategys_hooks(strategy, params):
    exp = load_config(None, {**TINY, **strategy, "seed": 11, "federation.local_epochs": 3,
                             "federation.batch_size": 4, "federation.momentum": 0.5})

    ctx = round_of(exp, 3, client_ids=[2, 0], aggregation=2)

    assert (ctx.server_round, ctx.aggregation, ctx.client_ids, ctx.seed) == (3, 2, (2, 0), 11)
    assert (ctx.local_epochs, ctx.batch_size, ctx.momentum, ctx.optimizer) == (3, 4, 0.5, "sgd")
    assert ctx.lr == pytest.approx(0.1)  # round 3 of a 4-round cosine schedule from 0.2: 0.2 * (1 + cos(pi/2)) / 2
    assert ctx.params == params


def test_a_missing_strategy_value_is_refused_by_name():
    ctx = RoundContext(server_round=1, aggregation=1, client_ids=(0,), reply=R.REPLY_SUMS, lr=0.1,
                       local_epochs=1, batch_size=8, seed=0, params={"other": 1})

    with pytest.raises(WireError, match=r"the round record has no 'params.proximal-mu' \(sent: \['other'\]\)"):
        ctx.param("proximal-mu")


def test_a_round_is_decoded_from_its_records_alone():
    # no experiment text anywhere in the message: names, parameters and round values only
    exp = load_config(None, TINY)
    msg = train_message(exp, copy_arrays(resident_of(exp).task.build_model()), [1], R.REPLY_WEIGHTS,
                        server_round=3)
    for record in msg.content.config_records.values():
        assert all(not (isinstance(v, str) and v.lstrip().startswith("{")) for v in record.values())

    rnd = RoundContext.from_record(msg.content.config_records[R.ROUND])
    run = RunSpec.from_record(msg.content.config_records[R.RUN])
    reply = train(msg, None)

    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    assert (run.task, run.model, run.num_clients) == ("synthetic", "mlp", 4)
    # round 3 of a 4-round cosine schedule from 0.2 to 0: 0.2 * (1 + cos(pi * 2 / 4)) / 2
    assert rnd.lr == pytest.approx(0.1) and rnd.client_ids == (1,) and rnd.server_round == 3
    assert reply.content[R.METRICS][R.NUM_EXAMPLES] > 0


@pytest.mark.parametrize("version, shown", [(1, "version 1"), (None, "no version")])
def test_a_record_of_another_wire_version_is_refused_with_a_message(version, shown):
    exp = load_config(None, TINY)
    msg = train_message(exp, copy_arrays(resident_of(exp).task.build_model()), [1], R.REPLY_WEIGHTS)
    record = msg.content.config_records[R.ROUND]
    if version is None:
        del record[R.WIRE_VERSION_KEY]
    else:
        record[R.WIRE_VERSION_KEY] = version

    reply = train(msg, None)

    assert reply.has_error()
    assert reply.error.reason.splitlines()[0] == (
        f"WireError: the server sent a round record of {shown}; this client speaks fedsim wire version "
        f"{R.WIRE_VERSION}: run the same fedsim release on server and clients")


def test_a_mistyped_round_value_is_refused_by_name():
    record = RoundContext(server_round=1, aggregation=1, client_ids=(0,), reply=R.REPLY_SUMS, lr=0.1,
                          local_epochs=1, batch_size=8, seed=0).to_record()
    record["lr"] = "fast"

    with pytest.raises(WireError, match="the round record's 'lr' is 'fast', not a float"):
        RoundContext.from_record(ConfigRecord(record))


def test_a_folder_run_needs_the_nodes_own_data_folder(tmp_path):
    from fedsim.client.app import Resident

    spec = RunSpec(seed=0, num_clients=2, task="image", model="resnet_small", strategy="fedavg",
                   partitioning={"kind": "iid", "alpha": 0.5, "classes_per_client": 2}, folder_data=True)

    with pytest.raises(ValueError, match="give this node one with --node-config data-dir=PATH"):
        Resident(spec, data_dir=None)


def test_node_settings_come_from_node_config_then_the_environment(monkeypatch):
    from types import SimpleNamespace

    from fedsim.client.app import node_setting

    monkeypatch.setenv("FEDSIM_STATE_DIR", "/env/state")
    context = SimpleNamespace(node_config={"data-dir": "/box/data"})

    assert node_setting(context, R.NODE_DATA_DIR) == "/box/data"
    assert node_setting(context, R.NODE_STATE_DIR) == "/env/state"
    monkeypatch.delenv("FEDSIM_DEVICE", raising=False)
    assert node_setting(context, R.NODE_DEVICE) is None


def test_a_deployed_node_trains_all_of_its_own_folder_under_its_client_id(tmp_path):
    from fedsim.client.app import Resident
    from tests.deploy.test_deploy_run import image_folder

    box = image_folder(tmp_path / "box", offset=0, per_class=6)  # 60 images of this box only
    exp = load_config(None, {"task.name": "image", "task.data_dir": str(box), "federation.clients": 3,
                             "federation.clients_per_round": 3, "partitioning.kind": "iid",
                             "task.params": {"image_size": 16, "min_samples": 400, "max_samples": 400}})
    shared = Resident(RunSpec.from_experiment(exp), data_dir=str(box))
    whole = Resident(RunSpec.from_experiment(exp, whole_node=True), data_dir=str(box))
    decoded = RunSpec.from_record(ConfigRecord(RunSpec.from_experiment(exp, whole_node=True).to_record()))

    # 400 draws per client from its pool of the box's training images: all of them, for a whole node
    train_ids = set(whole.task._folder.index.train_ids.tolist())
    pools = [set(shared.task._folder.client_items(c).tolist()) for c in range(3)]
    update = whole.train(copy_arrays(whole.task.build_model()), 2,
                         round_of(exp, 1, client_ids=[2], reply=R.REPLY_WEIGHTS), None)

    assert decoded.whole_node
    assert set(whole.task._folder.client_items(0).tolist()) == train_ids
    assert all(len(pool) < len(train_ids) / 2 for pool in pools) and set().union(*pools) == train_ids
    assert update.client_id == 2 and update.num_examples == 400
    with pytest.raises(ValueError, match="is generated and split among the boxes"):  # tests/deploy/test_partitions.py
        Resident(RunSpec.from_experiment(load_config(None, TINY), whole_node=True), data_dir=None)
