"""The launcher: the one module that calls Flower's simulation runtime and composes the
ServerApp (fedsim's round loop) with the ClientApp; it sits above ``server/`` and ``engines/``.

``simulate(exp, run_dir)`` starts Flower's simulation runtime with the Ray backend and as
many virtual SuperNodes as the engine needs, gives the simulated nodes their own settings
(state directory, data folder, device: what a deployed SuperNode gets from ``--node-config``),
runs the round loop as the ServerApp and returns the run's summary.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fedsim import records as R
from fedsim.config import ExperimentConfig
from fedsim.engines import Engine, make_engine, ray_cluster, warm
from fedsim.engines.stop import Interrupted, RunStopped, SignalsStop, StopFlag


def ray_init_args(exp: ExperimentConfig) -> dict[str, Any]:
    """``ray.init`` arguments: quiet start-up, and the cluster to attach to — only the one
    ``--ray-address`` names; without it a local Ray of the run's own (``"local"``), never a
    cluster that happens to run on this host (:func:`fedsim.engines.ray_cluster.is_attached`)."""
    return {**ray_cluster.LOCAL_INIT_ARGS, "address": exp.engine.ray_address or "local"}


def backend_config(exp: ExperimentConfig, engine: Engine | None = None) -> dict[str, Any]:
    """Ray backend settings: CPUs (and GPU share) per SuperNode, the cluster (see
    :func:`ray_init_args`), quiet start-up."""
    engine = engine or make_engine(exp)
    return {"client_resources": {"num_cpus": exp.engine.num_cpus_per_client, "num_gpus": engine.gpus_per_node},
            "init_args": ray_init_args(exp)}


def node_settings(exp: ExperimentConfig, run_dir: str, device: str) -> dict[str, str]:
    """The simulated nodes' own settings as ``FEDSIM_<KEY>`` environment variables (read by
    :func:`fedsim.client.app.node_setting`): Flower's simulation has no per-node config.
    ``device``: the engine's, or on an attached cluster the ``engine.device`` setting itself
    (``auto`` resolves on each worker: CUDA where Ray gave it a GPU)."""
    env = {R.NODE_STATE_DIR: str((Path(run_dir) / "client_state").resolve()), R.NODE_DEVICE: device}
    if exp.task.data_dir is not None:
        env[R.NODE_DATA_DIR] = str(Path(exp.task.data_dir).resolve())
    if exp.plugins:  # the simulated nodes belong to the user whose config named them
        env[R.NODE_PLUGINS] = ",".join(exp.plugins)
    return {R.node_env_name(key): value for key, value in env.items()}


def keeps_client_state(exp: ExperimentConfig) -> bool:
    """Whether the run's clients keep tensors of their own between rounds (FedVSSL's heads):
    its strategy's client half (DP keeps the wrapped rule's) lets clients load only part of the
    global model. Read from the registered class; nothing is built."""
    from fedsim.registry import STRATEGIES

    return STRATEGIES.get(exp.strategy.name).Hooks.loads_part()


@contextlib.contextmanager
def shared_paths(exp: ExperimentConfig, run_dir: str) -> Iterator[dict[str, str]]:
    """The paths every node of an attached cluster must see (setting -> path).

    ``--data-dir``: each worker opens it at the driver's path. Client state (FedVSSL's
    heads): any worker may train any client, because Flower's actor pool gives each message
    to whichever actor is free, so a client's state must be where every node reads and
    writes the same files: under ``--out`` on a filesystem all nodes share. That is checked
    with a marker file the driver writes next to the run directory, not with the directory
    itself (a ``/tmp`` path exists on every node without being shared).
    """
    paths: dict[str, str] = {}
    if exp.task.data_dir is not None:
        paths["task.data_dir (--data-dir)"] = str(Path(exp.task.data_dir).resolve())
    marker = None
    if keeps_client_state(exp):
        folder = Path(run_dir).resolve()
        while not folder.exists():
            folder = folder.parent
        marker = folder / f".fedsim-shared-{os.getpid()}-{time.time_ns()}"
        marker.touch()
        paths["client state (under --out)"] = str(marker)
    try:
        yield paths
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def attached_engine(exp: ExperimentConfig, run_dir: str, *, quiet: bool) -> Engine:
    """The engine sized by the attached cluster (its nodes' CPUs and GPUs, not the driver's),
    after checking that every node sees the paths its workers open; says that it attached."""
    from fedsim.server.progress import note

    cluster = ray_cluster.cluster()
    try:
        engine = make_engine(exp, cluster)
    except ValueError as e:
        raise ray_cluster.RayUnavailable(str(e)) from None
    with shared_paths(exp, run_dir) as paths:
        ray_cluster.check_nodes_see(paths)
    if not quiet:
        note(f"attached to the Ray cluster at {exp.engine.ray_address}: {cluster.describe()}; "
             f"{engine.num_nodes} {engine.name} worker(s) training on {engine.device}")
    return engine


# Flower 1.41's simulation dispatcher (``vce_api.add_messages_to_queue``) moves the ServerApp's
# messages from the LinkState to the Ray workers in a loop that sleeps 100 ms between passes,
# so every round waits up to 100 ms before training starts. A cohort round at 100 MLP clients
# trains in ~60 ms: measured 598 client-updates/s against pfl-research's 840 (same run) with
# the 100 ms pass. With W cohort nodes a pass is W cheap LinkState reads, so fedsim passes
# every DISPATCH_INTERVAL instead; the flower engine (one node per client, 1000 reads a pass)
# keeps Flower's pace. The loop below is Flower's, with the interval as the only change, and
# it is applied only to the Flower release and function source it was copied from
# (DISPATCHER_SOURCE: sha256 of ``inspect.getsource`` of flwr 1.41.0's function); any other
# Flower runs at its own pace after one warning.
DISPATCH_INTERVAL = 0.002
DISPATCHER_FLWR_VERSION = "1.41.0"
DISPATCHER_SOURCE = "953f4bd41a931a7779a4a670ab17b633f6e20b08a0128535328674466419777a"
_warned_dispatcher = False


def dispatcher_patchable() -> str | None:
    """``None`` when the installed Flower's dispatcher is the one the fast loop was copied
    from; otherwise why not."""
    import flwr
    from flwr.server.superlink.fleet.vce import vce_api

    if flwr.__version__ != DISPATCHER_FLWR_VERSION:
        return f"flwr {flwr.__version__} is installed, the fast dispatcher was written for {DISPATCHER_FLWR_VERSION}"
    original = getattr(vce_api, "add_messages_to_queue", None)
    if original is None:
        return "flwr's vce_api has no add_messages_to_queue"
    try:
        digest = hashlib.sha256(inspect.getsource(original).encode()).hexdigest()
    except (OSError, TypeError):
        return "the source of flwr's add_messages_to_queue cannot be read"
    if digest != DISPATCHER_SOURCE:
        return "flwr's add_messages_to_queue differs from the one the fast dispatcher was copied from"
    return None


@contextlib.contextmanager
def dispatch_every(interval: float, stop: StopFlag | None = None) -> Iterator[None]:
    """Run Flower's simulation dispatcher with a pass every ``interval`` seconds, when the
    installed Flower is the one it was copied from (else Flower's own, after one warning).
    A dispatcher that raises sets ``stop`` with the error, so the round loop ends with a
    message instead of waiting for messages nobody moves."""
    global _warned_dispatcher
    from flwr.server.superlink.fleet.vce import vce_api

    why_not = dispatcher_patchable()
    if why_not is not None:
        if not _warned_dispatcher:
            warnings.warn(f"{why_not}; cohort rounds run at Flower's own dispatch pace (up to 100 ms "
                          "more per round)", RuntimeWarning, stacklevel=3)
            _warned_dispatcher = True
        yield
        return
    original = vce_api.add_messages_to_queue

    def add_messages_to_queue(state: Any, queue: Any, nodes_mapping: Any, f_stop: Any) -> None:
        try:
            while not f_stop.is_set():
                for node_id in nodes_mapping.keys():
                    for msg in state.get_message_ins(node_id=node_id, limit=1):
                        queue.put(msg)
                f_stop.wait(interval)
        except Exception as e:
            if stop is None:
                raise
            stop.set(f"Flower's message dispatcher failed ({type(e).__name__}: {e})")  # the run reports it

    vce_api.add_messages_to_queue = add_messages_to_queue
    try:
        yield
    finally:
        vce_api.add_messages_to_queue = original


# Flower's simulation workers (threads in the main process) wait for a Ray actor's reply
# with ``ray.get(future)`` and no timeout, and Flower's runtime returns only when every worker
# is free: one client that never finishes would keep a run from ever ending, even after its
# round timed out and the round loop finished. fedsim waits in slices instead, and once the
# run is stopping (the loop ended, a signal, the runtime failed) kills the busy actor, which
# frees the worker. Flower also shuts Ray down (``RayBackend.terminate``) while its workers
# may still be inside a Ray call; Ray's core worker then ends the whole process ("already
# been shutdown", exit 1) and leaves its agents running. So Ray is shut down only once the
# workers are out (or after WORKERS_OUT_SECONDS).
FETCH_SLICE = 0.2
WORKERS_OUT_SECONDS = 5.0


@contextlib.contextmanager
def workers_stop_with(stop: StopFlag) -> Iterator[None]:
    """Make Flower's simulation workers give up a busy actor once ``stop`` is set, and
    Flower's Ray backend wait for its workers before it shuts Ray down."""
    import ray
    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend
    from flwr.simulation.ray_transport.ray_actor import BasicActorPool
    from ray.exceptions import GetTimeoutError

    originals = (BasicActorPool.fetch_result_and_return_actor_to_pool, vce_api.worker, RayBackend.terminate)
    running: set[threading.Thread] = set()

    def fetch_result_and_return_actor_to_pool(pool: Any, future: Any) -> Any:
        while True:
            try:
                _, out_message, updated_context = ray.get(future, timeout=FETCH_SLICE)
                break
            except GetTimeoutError:
                if stop.is_set():
                    with contextlib.suppress(Exception):  # already gone
                        ray.kill(pool._future_to_actor[future], no_restart=True)
                    raise RunStopped(f"worker stopped: {stop.reason}") from None
        pool.add_actor_back_to_pool(future)
        return out_message, updated_context

    def worker(*args: Any) -> None:
        running.add(threading.current_thread())
        try:
            originals[1](*args)
        finally:
            running.discard(threading.current_thread())

    def terminate(backend: Any) -> None:
        deadline = time.monotonic() + WORKERS_OUT_SECONDS
        while running and time.monotonic() < deadline:
            time.sleep(0.02)
        originals[2](backend)

    BasicActorPool.fetch_result_and_return_actor_to_pool = fetch_result_and_return_actor_to_pool
    vce_api.worker, RayBackend.terminate = worker, terminate
    try:
        yield
    finally:
        BasicActorPool.fetch_result_and_return_actor_to_pool = originals[0]
        vce_api.worker, RayBackend.terminate = originals[1], originals[2]


def planned_workers(exp: ExperimentConfig, engine: Engine) -> int:
    """The most Ray actors a round can keep busy: the cohort engine's nodes, or the flower
    engine's clients per round (one message, one actor each)."""
    return engine.planned_workers(exp.federation.cohort_size())


@contextlib.contextmanager
def actor_pool_at_most(workers: int) -> Iterator[None]:
    """Flower sizes its actor pool as the cluster's CPUs / ``num_cpus_per_client`` (each actor
    a process holding the task and model); cap it at ``workers``, the most a round uses."""
    from flwr.simulation.ray_transport.ray_actor import BasicActorPool

    original = BasicActorPool.__init__

    def init(pool: Any, *args: Any, **kwargs: Any) -> None:
        original(pool, *args, **kwargs)
        pool.actors_capacity = max(1, min(pool.actors_capacity, workers))

    BasicActorPool.__init__ = init
    try:
        yield
    finally:
        BasicActorPool.__init__ = original


# After the runtime stops, how long the ServerApp thread gets to leave its wait.
JOIN_SECONDS = 20.0
# Flower's wrapper around an exception of its runtime in the main thread
_FLOWER_RUNTIME_ERROR = "An error was encountered. Ending simulation."


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def quiet_flower(verbose: bool) -> None:
    """Without ``verbose``, silence Flower's logger for the rest of the process (its worker
    threads may outlive ``simulate`` by a moment after a signal): fedsim reports client
    failures (one line per reason) and runtime failures (one line) itself, and a timed-out
    round's late replies make Flower log an ERROR each."""
    if not verbose:
        logging.getLogger("flwr").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


class _ServerRun:
    """The round loop as a ServerApp (:func:`fedsim.server.app.server_app`), and what the
    launcher needs to stop and report it."""

    def __init__(self, exp: ExperimentConfig, run_dir: str, callbacks: Sequence[Any] = (),
                 **loop_options: Any) -> None:
        self.exp, self.run_dir, self.callbacks, self.loop_options = exp, run_dir, callbacks, loop_options
        self.stop = StopFlag()
        self.thread: threading.Thread | None = None  # Flower's ServerApp thread, once started
        self.run: Any = None  # the LoopRun, once the ServerApp started

    def setup(self, grid: Any, context: Any) -> Any:
        from fedsim.server.app import LoopRun

        self.thread = threading.current_thread()
        # once the loop ended, no worker need finish what it no longer waits for
        self.run = LoopRun(grid, self.exp, self.run_dir, callbacks=self.callbacks,
                           options={"stop": self.stop, **self.loop_options},
                           close=lambda: self.stop.set("the round loop ended"))
        return self.run

    def app(self) -> Any:
        from fedsim.server.app import server_app

        return server_app(self.setup)

    @property
    def result(self) -> dict[str, Any]:
        """The summary of a run that returned one, else empty."""
        return self.run.summary if self.run is not None else {}

    def stopped(self, error: BaseException | None) -> BaseException:
        """What to raise for a run that ended without its summary (``error``: the main
        thread's exception, if any)."""
        loop = self.run.loop if self.run is not None else None
        last = loop.last_round if loop is not None else _last_round(self.run_dir)
        if self.stop.signum is not None:
            return RunStopped(self.stop.reason, signum=self.stop.signum, last_round=last)
        if error is None or str(error) == _FLOWER_RUNTIME_ERROR or isinstance(error, RunStopped):
            stopped = RunStopped(self.stop.reason, last_round=last)
            stopped.__cause__ = error
            return stopped
        return error


def simulate(exp: ExperimentConfig, run_dir: str, *, quiet: bool = False, verbose: bool = False,
             resume: bool = False, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Run ``exp`` on Flower's simulation runtime and return its summary.

    ``resume=True`` continues the run in ``run_dir`` from its last complete round;
    ``callbacks`` (:class:`fedsim.server.callbacks.RoundCallback`, e.g. trackers) follow the
    round loop's own outputs.
    The run always ends: on SIGINT/SIGTERM, or when the runtime stops (Ray failing to start
    or crashing), the round loop is stopped, Ray is shut down and :class:`RunStopped` is raised
    (with the signal and the last complete round); an unreachable ``--ray-address`` or a
    cluster too small for one worker raises :class:`RayUnavailable` within seconds.
    """
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    attached = ray_cluster.is_attached(exp.engine.ray_address)
    local = None if attached else make_engine(exp)
    run = _ServerRun(exp, run_dir, callbacks, quiet=quiet, verbose=verbose, resume=resume)
    error: BaseException | None = None
    kept = False
    signals = SignalsStop(run.stop)
    quiet_flower(verbose)
    if not quiet:
        _note_start(exp, local)
    with signals.active():  # gives the process's own handlers back at the end, Ray's replaced
        try:
            device = local.device if local is not None else exp.engine.device
            try:
                kept = _start_ray(exp, ray_init_args(exp), node_settings(exp, run_dir, device), verbose)
            except Exception as e:  # e.g. ray.init timing out: the runtime stopped before the run (exit 3)
                if isinstance(e, ray_cluster.RayUnavailable):
                    raise
                raise RunStopped(f"Ray did not start ({_root_cause(e)})") from e
            signals.reinstall()  # ray.init installed its own SIGTERM handler (sys.exit)
            run.loop_options["engine"] = engine = local or attached_engine(exp, run_dir, quiet=quiet)
            _run_simulation(run, engine, verbose)
        except Interrupted:
            pass
        except SystemExit as e:  # Ray's SIGTERM handler, if the signal came during ray.init
            if e.code != signal.SIGTERM:
                raise
            run.stop.set("interrupted by SIGTERM", signal.SIGTERM)
        except BaseException as e:
            error = e
        finally:  # whatever ended the runtime's part, the round loop must end too
            signals.armed = False
            _end_run(run, error, kept)
    if run.result:
        return run.result
    raise run.stopped(error)


def _note_start(exp: ExperimentConfig, local: Engine | None) -> None:
    """The start-up line: the cluster the run attaches to, or the local Ray it starts."""
    from fedsim.server.progress import note

    if local is None:
        note(f"attaching to the Ray cluster at {exp.engine.ray_address} ...")
    else:
        note(f"starting Ray with {local.num_nodes} {local.node_noun}"
             f"{'s' if local.num_nodes != 1 else ''} on {local.device} ...")


def _run_simulation(run: _ServerRun, engine: Engine, verbose: bool) -> None:
    """Flower's simulation runtime with the round loop as ServerApp, until the loop ends
    (the cohort engine with the fast dispatcher; workers that give up once ``run`` stops)."""
    from flwr.simulation import run_simulation

    from fedsim.client.app import app as client_app

    fast = dispatch_every(DISPATCH_INTERVAL, run.stop) if engine.fast_dispatch else contextlib.nullcontext()
    with fast, workers_stop_with(run.stop), actor_pool_at_most(planned_workers(run.exp, engine)):
        run_simulation(server_app=run.app(), client_app=client_app, num_supernodes=engine.num_nodes,
                       backend_config=backend_config(run.exp, engine), verbose_logging=verbose)


def _end_run(run: _ServerRun, error: BaseException | None, kept: bool) -> None:
    """After the runtime returned or failed: stop the round loop (``error``: why), give its
    thread time to leave, and stop Ray unless it is the process's kept cluster."""
    run.stop.set(str(error) if isinstance(error, RunStopped) else
                 f"the simulation runtime stopped ({_root_cause(error)})" if error else
                 "the simulation runtime stopped")
    if run.thread is not None:
        run.thread.join(JOIN_SECONDS)
    if not kept:
        ray_cluster.stop()
    elif error is not None:  # the kept cluster may be what failed: the next run starts a new one
        warm.release()


def _start_ray(exp: ExperimentConfig, init_args: dict[str, Any], env: dict[str, str], verbose: bool) -> bool:
    """Start (or attach to) Ray for a run; ``True`` when the run uses the process's kept
    cluster (:mod:`fedsim.engines.warm`), which then stays up after the run."""
    kept = warm.serves(exp.engine.ray_address)
    if kept:
        warm.set_node_env(env)
    ray_cluster.start(init_args, num_cpus_per_client=exp.engine.num_cpus_per_client,
                      quiet_workers=not verbose, env=env)
    return kept


def _last_round(run_dir: str) -> int | None:
    """The last round recorded in ``run_dir`` when the stop came before the loop existed
    (``None``: the run never started, nothing to resume)."""
    from fedsim.server.outputs import read_rounds

    return max((int(r["round"]) for r in read_rounds(Path(run_dir))), default=None)
