"""One local Ray cluster, and its Flower worker actors, kept up between the runs of a process.

Each run normally starts Ray, creates Flower's actor pool (one worker process per actor, each
importing torch and Flower) and at the end kills the actors and shuts Ray down: seconds of
start-up and shut-down around every run. Inside :func:`warm_cluster` a run on the local
machine (no ``engine.ray_address``) instead reuses the cluster and the idle actors the
previous run left: Flower's ``BasicActorPool`` takes kept actors before creating new ones,
hands its actors back instead of terminating them, and Flower's Ray backend leaves Ray up.

A run still gets its own run directory, seed and records: the workers rebuild task, model
and strategy from the run record of the next run's messages (``fedsim.client.app`` keys its
resident objects by run), and each run's node settings (state directory, data folder,
device) are pushed to every actor before the run starts, which is also the liveness check:
a kept actor that died is dropped and replaced by a new one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from fedsim.records import NODE_KEYS, node_env_name

READY_SECONDS = 30.0  # how long the kept actors get to answer before a run (dead ones answer at once)


class _Keeper:
    """The process's kept actors, by the resources they were created with."""

    def __init__(self) -> None:
        self.idle: dict[tuple[tuple[str, float], ...], list[Any]] = {}
        self.env: dict[str, str] = {}

    def take(self, resources: dict[str, float], count: int) -> list[Any]:
        """Up to ``count`` kept actors made with ``resources``; every other kept actor is
        killed (it would hold CPUs the new pool's actors wait for)."""
        import ray

        mine = self.idle.pop(_key(resources), [])
        surplus = mine[count:] + [a for actors in self.idle.values() for a in actors]
        self.idle.clear()
        for actor in surplus:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        return mine[:count]

    def give(self, resources: dict[str, float], actors: list[Any]) -> None:
        self.idle.setdefault(_key(resources), []).extend(actors)

    def all(self) -> list[Any]:
        return [a for actors in self.idle.values() for a in actors]


_keeper: _Keeper | None = None


def _key(resources: dict[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, float(v)) for k, v in resources.items()))


def active() -> bool:
    """Whether this process keeps its local cluster and actors between runs."""
    return _keeper is not None


def serves(ray_address: str | None) -> bool:
    """Whether a run with this ``engine.ray_address`` uses the kept cluster; a run that
    attaches elsewhere first closes the kept one (it starts again with the next local run)."""
    if _keeper is None:
        return False
    if ray_address:
        release()
        return False
    return True


def set_node_env(env: dict[str, str]) -> None:
    """The node settings for the next run's actors (this process's environment too: actors
    Ray starts later inherit the cluster's environment, then get these pushed)."""
    assert _keeper is not None
    for key in NODE_KEYS:
        os.environ.pop(node_env_name(key), None)
    os.environ.update(env)
    _keeper.env = dict(env)


def _apply_env(actor_self: Any, env: dict[str, str], names: list[str]) -> int:
    """Runs inside an actor (through ``__ray_call__``): this run's node settings, and the
    previous runs' task, model and strategy dropped (memory; a run builds its own, as on a
    fresh worker)."""
    import gc
    import sys

    for name in names:
        os.environ.pop(name, None)
    os.environ.update(env)
    client_app = sys.modules.get("fedsim.client.app")
    if client_app is not None:
        getattr(client_app, "_RESIDENTS", {}).clear()
    gc.collect()
    return os.getpid()


def prepare(actors: list[Any], *, check: bool = True) -> list[Any]:
    """Push this run's node settings to ``actors`` (an actor runs its calls in order, so they
    apply before the run's first message); with ``check``, wait up to ``READY_SECONDS`` and
    leave out the actors that died (a slow one is kept: it is alive, just busy starting)."""
    import ray

    assert _keeper is not None
    names = [node_env_name(k) for k in NODE_KEYS]
    refs = [a.__ray_call__.remote(_apply_env, _keeper.env, names) for a in actors]
    if not check or not refs:
        return list(actors)
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=READY_SECONDS)
    alive = []
    for actor, ref in zip(actors, refs):
        try:
            if ref in ready:
                ray.get(ref)
            alive.append(actor)
        except Exception:  # a dead actor: replaced by a new one
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
    return alive


@contextlib.contextmanager
def _patched() -> Iterator[None]:
    """Flower's actor pool takes kept actors first and keeps its actors at the end; its Ray
    backend leaves Ray running."""
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend
    from flwr.simulation.ray_transport.ray_actor import BasicActorPool

    originals = (BasicActorPool.add_actors_to_pool, BasicActorPool.terminate_all_actors, RayBackend.terminate)

    def add_actors_to_pool(pool: Any, num_actors: int) -> None:
        kept = prepare(_keeper.take(pool.client_resources, num_actors)) if _keeper else []
        fresh = [pool.create_actor_fn() for _ in range(num_actors - len(kept))]
        if fresh and _keeper is not None:
            prepare(fresh, check=False)  # still starting: nothing to wait for
        pool.pool.extend(kept + fresh)
        pool.num_actors += len(kept) + len(fresh)

    def terminate_all_actors(pool: Any) -> None:
        if _keeper is None:
            return originals[1](pool)
        _keeper.give(pool.client_resources, list(pool.pool))
        pool.pool.clear()

    def terminate(backend: Any) -> None:
        if _keeper is None:
            return originals[2](backend)
        if backend.pool:
            backend.pool.terminate_all_actors()

    BasicActorPool.add_actors_to_pool = add_actors_to_pool
    BasicActorPool.terminate_all_actors = terminate_all_actors
    RayBackend.terminate = terminate
    try:
        yield
    finally:
        BasicActorPool.add_actors_to_pool, BasicActorPool.terminate_all_actors, RayBackend.terminate = originals


def prestart() -> None:
    """Start the kept cluster now, as the next local run would, so that Ray's start-up overlaps
    whatever this process does before that run (a bench's cell host starts it while the bench
    still plans and checks its cells). The run's actors are created, and get its node
    settings, when it starts."""
    from fedsim.engines import ray_cluster

    assert _keeper is not None, "prestart() belongs inside warm_cluster()"
    ray_cluster.start(dict(ray_cluster.LOCAL_INIT_ARGS), num_cpus_per_client=0.0)


def release() -> None:
    """Kill the kept actors and shut the kept cluster down (``warm_cluster`` stays active)."""
    import ray

    if _keeper is not None:
        for actor in _keeper.all():
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        _keeper.idle.clear()
    if ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Within this block runs start and stop Ray of their own as without ``warm_cluster``
    (the kept cluster is shut down first and started again by the next local run after it)."""
    global _keeper
    keeper, _keeper = _keeper, None
    if keeper is not None:
        _keeper = keeper
        release()
        _keeper = None
    try:
        yield
    finally:
        _keeper = keeper


@contextlib.contextmanager
def warm_cluster() -> Iterator[None]:
    """Within this block, local runs of this process share one Ray cluster and its actors."""
    global _keeper
    if _keeper is not None:  # nested: the outer block owns the cluster
        yield
        return
    _keeper = _Keeper()
    try:
        with _patched():
            yield
    finally:
        try:
            release()
        finally:
            _keeper = None
