"""Configuration: defaults, YAML + overrides, and one-line errors that name the field."""

import pytest

from fedsim.config import ConfigError, load_config, parse_override


def test_defaults_and_overrides_compose(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("federation:\n  clients: 50\n  rounds: 2\nstrategy:\n  name: fedavg\n")

    exp = load_config(path, {"federation.rounds": 7, "seed": 3})

    assert exp.federation.clients == 50  # from YAML
    assert exp.federation.rounds == 7  # CLI beats YAML
    assert exp.seed == 3
    assert exp.federation.cohort_size() == 5  # default clients_per_round


def test_fraction_sets_cohort_size():
    exp = load_config(None, {"federation.clients": 40, "federation.fraction": 0.25,
                             "federation.clients_per_round": None})

    assert exp.federation.cohort_size() == 10


@pytest.mark.parametrize("overrides, expected", [
    # case: unknown strategy lists the allowed names
    ({"strategy.name": "ldawa2"}, "strategy.name: unknown strategy 'ldawa2'; choose one of: "),
    # case: cohort larger than population
    ({"federation.clients": 10, "federation.clients_per_round": 20},
     "federation: clients_per_round (20) is more than clients (10); choose 1..10"),
    # case: negative learning rate
    ({"federation.lr": -0.1}, "federation.lr: Input should be greater than 0 (got -0.1)"),
    # case: unknown key lists the allowed keys of its section
    ({"federation.clientz": 3}, "federation.clientz: unknown field; allowed: clients,"),
    # case: wrong type
    ({"federation.rounds": "many"}, "federation.rounds: Input should be a valid integer"),
    # case: bad enum value
    ({"partitioning.kind": "zipf"}, "partitioning.kind: Input should be 'iid', 'dirichlet' or 'pathological'"),
    # case: a task's own parameter is checked by the task
    ({"task.params": {"temperature": -1}}, "task.params.temperature:"),
])
def test_config_errors_are_one_line_naming_the_field(overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)

    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


@pytest.mark.parametrize("text, expected", [
    ("rounds: [1, 2\n", "bad YAML at line"),  # case: syntax error
    ("- a\n- b\n", "the top level must be a mapping"),  # case: a list, not sections
])
def test_bad_yaml_is_one_line(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert expected in str(info.value) and "\n" not in str(info.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("nope/missing.yaml")


@pytest.mark.parametrize("text, key, value", [
    ("federation.lr=0.01", "federation.lr", 0.01),
    ("seed=3", "seed", 3),
    ("evaluation.linear_probe=false", "evaluation.linear_probe", False),
    ("out=runs/x", "out", "runs/x"),
])
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_override("federation.lr")


def test_fedrepopt_brings_its_client_optimizer_and_backbone():
    exp = load_config(None, {"strategy.name": "fedrepopt"})

    assert (exp.federation.optimizer, exp.model.name) == ("repopt-sgd", "repopt_vgg")


def test_client_optimizer_is_chosen_independently_of_the_server_rule():
    plain = load_config(None, {"strategy.name": "fedrepopt", "federation.optimizer": "sgd"})
    ghost = load_config(None, {"strategy.name": "fedavg", "model.name": "repghost",
                               "federation.optimizer": "repopt-sgd"})

    assert (plain.federation.optimizer, plain.model.name) == ("sgd", "repopt_vgg")
    assert (ghost.strategy.name, ghost.federation.optimizer) == ("fedavg", "repopt-sgd")


def test_repopt_sgd_on_a_model_without_masks_is_a_one_line_error():
    with pytest.raises(ConfigError) as info:
        load_config(None, {"strategy.name": "fedrepopt", "model.name": "resnet_small"})

    assert str(info.value) == ("federation.optimizer 'repopt-sgd' needs a RepOpt backbone; model.name is "
                               "'resnet_small', choose one of: repopt_vgg, repghost")
