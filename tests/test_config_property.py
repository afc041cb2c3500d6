"""Property-based: any invalid config value or YAML text gives one line on stderr and exit 2.

Runs ``fedsim run --check`` (validate, print, exit) so a config that happens to be valid
never starts a simulation.
"""

import json
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fedsim.cli import app

runner = CliRunner()
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# key -> values that are always invalid for it (wrong type, out of range, unknown name)
NUMBER_KEYS = ["federation.clients", "federation.clients_per_round", "federation.rounds",
               "federation.local_epochs", "federation.batch_size", "federation.lr",
               "federation.max_failed_rounds", "evaluation.every", "evaluation.knn_k", "seed",
               "engine.workers", "partitioning.alpha", "heterogeneity.dropout"]
NAME_KEYS = ["strategy.name", "task.name", "model.name", "engine.name", "partitioning.kind",
             "federation.optimizer"]

bad_numbers = st.one_of(
    st.integers(max_value=-1),  # every number key is >= 0 (most > 0)
    st.text(alphabet=string.ascii_letters, min_size=1, max_size=8),  # not a number
    st.lists(st.integers(), min_size=1, max_size=3),  # a list
    st.dictionaries(st.sampled_from("abc"), st.integers(), min_size=1, max_size=2),  # a section
)
bad_names = st.one_of(
    st.text(alphabet=string.ascii_lowercase + "_-", min_size=1, max_size=12).filter(
        lambda s: s not in _known_names()),
    st.integers(), st.lists(st.text(max_size=3), min_size=1, max_size=2),
)


def _known_names() -> set[str]:
    from fedsim.plugins import load_plugins
    from fedsim.registry import MODELS, STRATEGIES, TASKS

    load_plugins()
    return {*STRATEGIES.names(), *TASKS.names(), *MODELS.names(), "flower", "cohort", "iid",
            "dirichlet", "pathological", "sgd", "repopt-sgd"}


def _assert_one_line_exit_2(result) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output


@SETTINGS
@given(key=st.sampled_from(NUMBER_KEYS), value=bad_numbers)
def test_invalid_number_is_one_line_exit_2(key, value):
    result = runner.invoke(app, ["run", "--check", "--set", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"])

    _assert_one_line_exit_2(result)
    assert key.split(".")[0] in result.stderr


@SETTINGS
@given(key=st.sampled_from(NAME_KEYS), value=bad_names)
def test_invalid_name_is_one_line_exit_2(key, value):
    result = runner.invoke(app, ["run", "--check", "--set", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"])

    _assert_one_line_exit_2(result)
    assert key in result.stderr


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                         st.text(max_size=6))
yaml_trees = st.recursive(yaml_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3),
    st.dictionaries(st.sampled_from(["task", "model", "strategy", "federation", "clients", "rounds",
                                     "name", "params", "lr", "seed", "engine", "evaluation", "x"]),
                    kids, max_size=3)), max_leaves=8)


@SETTINGS
@given(text=st.one_of(st.text(max_size=60), yaml_trees.map(lambda t: yaml.safe_dump(t))))
def test_random_yaml_is_valid_or_one_line_exit_2(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "exp.yaml"
    path.write_text(text)

    result = runner.invoke(app, ["run", "--check", "--config", str(path)])

    if result.exit_code == 0:  # the text happened to be a valid experiment: it is printed resolved
        assert yaml.safe_load(result.stdout)["federation"]["clients"] >= 1
    else:
        _assert_one_line_exit_2(result)


# Every float key of the config (a non-finite value would reach clients as JSON null).
FLOAT_KEYS = ["federation.lr", "federation.fraction", "federation.momentum", "federation.weight_decay",
              "federation.round_timeout", "federation.min_success_fraction", "partitioning.alpha",
              "heterogeneity.speed_sigma", "heterogeneity.epoch_seconds", "heterogeneity.deadline",
              "heterogeneity.dropout", "strategy.dp_clip", "strategy.dp_noise",
              "engine.num_cpus_per_client", "task.params.temperature", "strategy.params.anything"]


@SETTINGS
@given(key=st.sampled_from(FLOAT_KEYS), value=st.sampled_from([".inf", "-.inf", ".nan", ".NaN", "+.Inf"]))
def test_non_finite_float_is_one_line_exit_2_at_check(key, value):
    result = runner.invoke(app, ["run", "--check", "--set", f"{key}={value}"])

    _assert_one_line_exit_2(result)
    assert f"{key}: must be a finite number" in result.stderr


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hosts = st.one_of(st.lists(_label, min_size=1, max_size=3).map(".".join), st.ip_addresses(v=4).map(str),
                  st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"))


@SETTINGS
@given(host=hosts, port=st.integers(1, 65535), scheme=st.sampled_from(["", "ray://"]))
def test_well_formed_ray_address_passes_check(host, port, scheme):
    address = f"{scheme}{host}:{port}"

    result = runner.invoke(app, ["run", "--check", "--ray-address", address])

    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["engine"]["ray_address"] == address


@SETTINGS
@given(text=st.text(max_size=30))
def test_any_ray_address_is_accepted_or_one_line_exit_2(text):
    result = runner.invoke(app, ["run", "--check", "--set", f"engine.ray_address={json.dumps(text)}"])

    if result.exit_code == 0:  # one of Ray's forms: auto, local, [ray://]HOST:PORT
        assert text in ("auto", "local") or text.rsplit(":", 1)[1].isdigit()
    else:
        _assert_one_line_exit_2(result)
        assert "engine.ray_address" in result.stderr
