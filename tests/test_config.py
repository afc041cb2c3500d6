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
    ({"partitioning.kind": "zipf"}, "partitioning.kind: Input should be 'iid', 'dirichlet'"),
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

    from fedsim.registry import repopt_models

    assert str(info.value) == ("federation.optimizer 'repopt-sgd' needs a RepOpt backbone; model.name is "
                               f"'resnet_small', choose one of: {', '.join(repopt_models())}")
    assert set(repopt_models()) == {"repopt_vgg", "repghost"}


# --- refused before Ray starts: non-finite numbers, shape, encoding, machine (issue 17) ---

@pytest.mark.parametrize("overrides, expected", [
    ({"federation.lr": float("inf")}, "federation.lr: must be a finite number (got inf)"),  # case: gt=0 float
    ({"federation.lr": float("nan")}, "federation.lr: must be a finite number (got nan)"),
    ({"strategy.dp_clip": float("inf")}, "strategy.dp_clip: must be a finite number"),  # case: optional float
    ({"heterogeneity.deadline": float("-inf")}, "heterogeneity.deadline: must be a finite number (got -inf)"),
    ({"task.params": {"temperature": float("inf")}}, "task.params.temperature: must be a finite number"),
    # case: free-form params, checked recursively
    ({"strategy.params": {"a": [1.0, {"b": float("nan")}]}}, "strategy.params.a[1].b: must be a finite number"),
])
def test_non_finite_numbers_are_refused(overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)

    assert str(info.value).startswith(expected)


def test_models_refuse_non_finite_numbers_without_load_config():
    from pydantic import ValidationError

    from fedsim.config import ExperimentConfig

    with pytest.raises(ValidationError, match="finite number"):
        ExperimentConfig(federation={"lr": float("inf")})
    with pytest.raises(ValidationError, match="finite number"):
        ExperimentConfig(strategy={"params": {"x": [float("nan")]}})


@pytest.mark.parametrize("text, expected", [
    # case: nested deeper than Python's recursion limit (RecursionError inside PyYAML)
    ("task:\n  params:\n    x: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 20 levels deep"),
    # case: deeper than MAX_DEPTH but parsed fine: refused by the tree check, naming the path
    ("task:\n  params:\n    x: " + "[" * 25 + "]" * 25 + "\n", "task.params.x[0]"),
])
def test_deep_nesting_is_one_line(tmp_path, text, expected):
    path = tmp_path / "deep.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert expected in str(info.value) and "\n" not in str(info.value)


def test_yaml_anchors_that_expand_exponentially_are_refused(tmp_path):
    lines = ["    a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):  # 9**9 values once expanded
        lines.append(f"    {name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "lol.yaml"
    path.write_text("task:\n  params:\n" + "\n".join(lines) + "\n")

    with pytest.raises(ConfigError, match="more than 100000 values"):
        load_config(path)


def test_deep_override_is_one_line():
    with pytest.raises(ConfigError, match="--set x: value nested more than"):
        parse_override("x=" + "[" * 5000 + "]" * 5000)


def test_binary_config_is_one_line(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(bytes(range(256)) * 8)

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert str(info.value) == f"{path}: not a UTF-8 text file; an experiment is a YAML text file"


def test_config_that_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(tmp_path)


def test_data_dir_for_a_task_that_reads_no_folders_names_the_task(tmp_path):
    with pytest.raises(ConfigError) as info:  # the synthetic task generates its data
        load_config(None, {"task.name": "synthetic", "model.name": "mlp", "task.data_dir": str(tmp_path)})

    assert str(info.value).startswith("task.data_dir: task 'synthetic' does not read data folders; "
                                      "leave --data-dir unset (tasks that do: ")


@pytest.fixture
def synthetic_reads_folders(monkeypatch):
    """The synthetic task, pretending to read ``data_dir`` (no registered task does yet)."""
    from fedsim.registry import TASKS

    monkeypatch.setattr(TASKS.get("synthetic"), "reads_data_dir", True)
    return {"task.name": "synthetic", "model.name": "mlp"}


def test_data_dir_must_be_an_existing_directory(tmp_path, synthetic_reads_folders):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")

    with pytest.raises(ConfigError, match=r"task.data_dir: '.*missing' does not exist"):
        load_config(None, {**synthetic_reads_folders, "task.data_dir": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"task.data_dir: '.*file.txt' is not a directory"):
        load_config(None, {**synthetic_reads_folders, "task.data_dir": str(a_file)})
    assert load_config(None, {**synthetic_reads_folders, "task.data_dir": str(tmp_path)}).task.data_dir == str(tmp_path)


def test_num_cpus_per_client_above_the_machine_is_refused():
    from fedsim.machine import usable_cores

    cores = usable_cores()

    with pytest.raises(ConfigError) as info:
        load_config(None, {"engine.num_cpus_per_client": cores + 1})

    assert str(info.value).startswith(f"engine.num_cpus_per_client: {cores + 1} is more than the {cores} CPU cores")
    assert load_config(None, {"engine.num_cpus_per_client": cores}).engine.num_cpus_per_client == cores
    # a cluster has its own cores: not checked against this machine
    assert load_config(None, {"engine.num_cpus_per_client": 999, "engine.ray_address": "10.0.0.1:6379"})


@pytest.mark.parametrize("address", [
    "127.0.0.1:6379", "localhost:1", "head-node.cluster.example:65535", "[::1]:6379",
    "ray://10.0.0.1:10001", "auto", "local",
])
def test_ray_address_forms_ray_accepts(address):
    assert load_config(None, {"engine.ray_address": address}).engine.ray_address == address


@pytest.mark.parametrize("address", [
    "localhost",  # case: no port
    "localhost:", "host:0", "host:65536", "host:99999", "host:http",  # case: bad port
    ":6379", "a b:1", "-host:1", "host.:1",  # case: bad host
    "http://host:1", "ray://host", "ray:/host:1", "", "host:1:2",  # case: other forms
])
def test_malformed_ray_address_is_one_line(address):
    with pytest.raises(ConfigError) as info:
        load_config(None, {"engine.ray_address": address})

    assert str(info.value) == ("engine.ray_address: expected HOST:PORT (port 1-65535), ray://HOST:PORT, "
                               f"auto or local (got {address!r})")


def test_another_backbone_named_later_drops_the_files_backbone_options(tmp_path):
    # Prepare: a file giving resnet_small an option only resnet_small takes
    path = tmp_path / "exp.yaml"
    path.write_text("task: {name: audio}\nmodel: {name: resnet_small, params: {row_bins: 8}}\n")
    # Execute / Assert: the same backbone keeps it; another one (with or without options of
    # its own) starts from none of the file's
    assert load_config(path).model.params == {"row_bins": 8}
    assert load_config(path, {"model.name": "resnet_small"}).model.params == {"row_bins": 8}
    assert load_config(path, {"model.name": "audio_rep_inceptionnext"}).model.params == {}
    assert load_config(path, {"model.params.stem_stride": 2, "model.name": "audio_rep_inceptionnext"}
                       ).model.params == {"stem_stride": 2}


def test_an_experiment_that_extends_another_runs_as_their_merge(tmp_path):
    # Prepare: a base experiment and one that extends it, changing one key of two sections
    (tmp_path / "base.yaml").write_text("task: {name: image, params: {objective: byol, image_size: 16}}\n"
                                        "federation: {clients: 40, rounds: 20, lr: 0.03}\n")
    (tmp_path / "short.yaml").write_text("extends: base.yaml\nfederation: {rounds: 2}\n"
                                         "task: {params: {image_size: 12}}\n")
    # Execute
    exp = load_config(tmp_path / "short.yaml", {"federation.lr": 0.1})
    # Assert: the file's keys over the base's, section by section; the override over both
    assert (exp.federation.clients, exp.federation.rounds, exp.federation.lr) == (40, 2, 0.1)
    assert (exp.task.params["objective"], exp.task.params["image_size"]) == ("byol", 12)


@pytest.mark.parametrize("text, expected", [
    # case: a bench spec given to `fedsim run` names the command that runs it
    ("grid: {seeds: [0, 1]}\n", "is a bench spec (it has grid:): run its cells with `fedsim bench --config "),
    # case: only one level of extends
    ("extends: chain.yaml\n", "extends: chain.yaml must be a plain experiment (no grid:, no extends:)"),
    # case: extends names a file
    ("extends: [a.yaml]\n", "extends: expected the path of an experiment YAML, got ['a.yaml']"),
    # case: a missing parent is the usual missing-file error
    ("extends: nowhere.yaml\n", "nowhere.yaml' does not exist"),
])
def test_grid_and_bad_extends_are_one_line(tmp_path, text, expected):
    (tmp_path / "chain.yaml").write_text("extends: other.yaml\n")
    (tmp_path / "exp.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "exp.yaml")
    assert expected in str(err.value) and "\n" not in str(err.value)
