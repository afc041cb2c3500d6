"""Starting and stopping Ray for a run, with bounded waits and one-line errors.

fedsim starts Ray itself before Flower's runtime (whose Ray backend then reuses it) so that
an unreachable ``--ray-address`` fails in seconds instead of Ray's minutes of retries, a
cluster too small for ``engine.num_cpus_per_client`` is one line, and the driver's signal
handlers are fedsim's, not the ``sys.exit`` Ray installs for SIGTERM.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from fedsim.records import NODE_KEYS, node_env_name

PROBE_SECONDS = 5.0  # how long a Ray head at --ray-address gets to accept a TCP connection
GCS_ATTEMPTS = 1  # then how many times ray.init tries its GCS (~35 s each)
LOG_LEVEL_ENV = "FLWR_LOG_LEVEL"  # Flower's log level, read when flwr is imported
LOCAL_INIT_ARGS: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": True, "address": "local"}
"""``ray.init`` arguments of a run on a local Ray of its own: quiet start-up, and ``"local"``, never
a cluster that happens to run on this host (:func:`is_attached`)."""


class RayUnavailable(RuntimeError):
    """Ray cannot be reached, or cannot host one worker: a settings problem (exit code 2)."""


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; ``None`` for ``auto``/``local``."""
    address = address.removeprefix("ray://")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def probe(address: str, *, timeout: float = PROBE_SECONDS) -> None:
    """Raise :class:`RayUnavailable` unless something accepts TCP connections at ``address``."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as e:
        reason = (f"no answer within {timeout:g}s" if isinstance(e, TimeoutError)
                  else (e.strerror or type(e).__name__).lower())
        raise RayUnavailable(f"engine.ray_address: no Ray cluster answers at {address} ({reason}); "
                             "start one with `ray start --head --port PORT` or leave out --ray-address "
                             "to run locally") from None


def start(init_args: dict[str, Any], *, num_cpus_per_client: float, quiet_workers: bool = True,
          env: dict[str, str] | None = None) -> None:
    """``ray.init`` as Flower's Ray backend would (it skips its own when Ray is up), after
    probing the address; then check that one worker fits on some node. ``quiet_workers``:
    Flower's logger in the workers shows errors only (not "Manually terminating
    ClientAppActor" per worker at the end). ``env``: more environment variables for the
    workers (the simulated nodes' settings)."""
    import ray

    if not ray.is_initialized():
        _init(init_args, quiet_workers=quiet_workers, env=env)
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if largest < num_cpus_per_client:
        raise RayUnavailable(f"engine.num_cpus_per_client: {num_cpus_per_client:g} CPUs per worker, but the "
                             f"largest Ray node has {largest:g}; choose at most {largest:g}")


def _init(init_args: dict[str, Any], *, quiet_workers: bool, env: dict[str, str] | None) -> None:
    import ray

    address = init_args.get("address")
    if address:
        probe(str(address))
        # Ray tries to reach a head's GCS 20 times, ~35 s each (11 minutes against a port that
        # accepts connections but is no Ray head); once is enough to know.
        from ray._private import ray_constants

        ray_constants.NUM_REDIS_GET_RETRIES = GCS_ATTEMPTS
    # Ray's workers inherit the environment, not this driver's sys.path (Flower does the same)
    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    env = {"PYTHONPATH": pythonpath, **({LOG_LEVEL_ENV: "ERROR"} if quiet_workers else {}), **(env or {})}
    options: dict[str, Any] = {"include_dashboard": False, **init_args}
    before = {key: os.environ.get(key) for key in (LOG_LEVEL_ENV, "PYTHONPATH")}
    if address and address != "local" or os.environ.get("FEDSIM_RAY_RUNTIME_ENV") == "1":
        options["runtime_env"] = {"env_vars": env}  # an existing cluster's workers get them from Ray
    else:
        # A local cluster's processes inherit this environment. Without a runtime_env, the
        # worker processes Ray starts idle at init can host Flower's actors, instead of each
        # actor starting a worker (and a runtime-env setup process) of its own.
        for key in NODE_KEYS:
            os.environ.pop(node_env_name(key), None)  # a previous run's node settings
        os.environ.update(env)
    try:
        ray.init(**options)
    except ConnectionError as e:
        raise RayUnavailable(f"engine.ray_address: no Ray cluster at {address} ({e}); start one with "
                             "`ray start --head --port PORT` or leave out --ray-address") from None
    finally:
        # The workers' log level and search path are for the workers: Ray's processes took
        # them at their start (Flower reads the level once, at import; workers Ray starts
        # later inherit the raylet's environment), and this process's later subprocesses (a
        # Flower SuperNode started from a notebook or test, say) must not inherit them; a
        # second ray.init in this process would otherwise widen PYTHONPATH again. The node
        # settings stay: fedsim.engines.warm keeps them here on purpose.
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    # A Flower worker thread still calling Ray after ray.shutdown (a signal stops the run while
    # it waits) would otherwise start a fresh local cluster whose agents outlive the process.
    from ray._private import auto_init_hook

    auto_init_hook.enable_auto_connect = False


def stop() -> None:
    """Disconnect from Ray and stop the processes ``ray.init`` started (an attached cluster
    keeps running)."""
    import ray

    ray.shutdown()  # also when ray.init was interrupted half-way: it stops what that started


def is_attached(address: str | None) -> bool:
    """Whether ``engine.ray_address`` attaches to an existing cluster. Without one a run
    starts its own local Ray (``address="local"``), even when ``ray start`` left a cluster
    on this host or ``RAY_ADDRESS`` is set: it never attaches by accident."""
    return address not in (None, "local")


def cluster() -> Any:
    """The connected cluster's alive nodes and their CPUs and GPUs (:class:`fedsim.engines.Cluster`)."""
    import ray

    from fedsim.engines import Cluster

    return Cluster(tuple((f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})", float(n["Resources"].get("CPU", 0)),
                          float(n["Resources"].get("GPU", 0))) for n in ray.nodes() if n.get("Alive")))


def _missing(paths: dict[str, str]) -> list[str]:
    """The settings among ``paths`` (setting -> path) whose path is not on this node."""
    return [what for what, path in paths.items() if not os.path.exists(path)]


NODE_CHECK_SECONDS = 60.0


def check_nodes_see(paths: dict[str, str], *, timeout: float = NODE_CHECK_SECONDS) -> None:
    """Raise :class:`RayUnavailable` naming the first alive node that does not see one of
    ``paths`` (setting -> path; e.g. ``--data-dir``): every node's workers open them at the
    same path. One zero-CPU task runs pinned to each node, so busy nodes answer too."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not paths:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    probe_task = ray.remote(num_cpus=0)(_missing)
    refs = [probe_task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(paths) for n in nodes]
    try:
        answers = ray.get(refs, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise RayUnavailable(f"the Ray nodes did not answer the path check within {timeout:.0f}s") from None
    for node, missing in zip(nodes, answers, strict=True):
        if missing:
            what = missing[0]
            raise RayUnavailable(f"{what}: Ray node {node['NodeManagerAddress']} ({node['NodeID'][:8]}) does not "
                                 f"see {paths[what]}; every node needs it at the same path (a shared "
                                 "filesystem or a copy)")
