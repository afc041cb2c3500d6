"""The ``cohort`` engine: one worker per core trains many sampled clients one after another
on a resident model and replies with the strategy's partial sums (validated per client on
the worker), so a round costs a message per worker instead of per client."""

from __future__ import annotations

from typing import Any

from fedsim import records as R
from fedsim.engines.base import LOSS_SUM, Engine, payload_bytes, read_counts
from fedsim.registry import register_engine


@register_engine("cohort")
class CohortEngine(Engine):
    """cohort: one worker per core (or ``workers_per_gpu`` per GPU) trains many clients."""

    name = "cohort"
    reply = R.REPLY_SUMS
    fast_dispatch = True  # W cheap LinkState reads a dispatcher pass (fedsim.launcher.dispatch_every)

    @classmethod
    def plan(cls, exp: Any, device: str, cluster: Any = None) -> CohortEngine:
        from fedsim.engines import cluster_workers, default_workers

        per_gpu = exp.engine.workers_per_gpu
        sized = (default_workers(device, per_gpu) if cluster is None
                 else cluster_workers(cluster, device, per_gpu, exp.engine.num_cpus_per_client))
        return cls(num_nodes=exp.engine.workers or sized, device=device,
                   gpus_per_node=1.0 / per_gpu if device == "cuda" else 0.0)

    def assign(self, client_ids: list[int], node_ids: list[int]) -> list[tuple[int, list[int]]]:
        workers = min(len(node_ids), len(client_ids))
        chunks = [client_ids[i::workers] for i in range(workers)]
        return [(node_ids[i], chunk) for i, chunk in enumerate(chunks)]

    @staticmethod
    def fold(content: Any, client_ids: list[int], acc: Any, tally: Any) -> int:
        """A worker validated each client itself; check the partial sums are sane and merge them.

        ``tally.bytes_up`` grows by what each of its clients that produced an update (folded
        or rejected) would have sent: the strategy's ``sent_keys``, which ``acc.previous``
        holds, not the sums themselves."""
        from fedsim.strategies.validation import all_finite

        metrics = content.metric_records[R.METRICS]
        done = int(metrics.get(R.NUM_CLIENTS_DONE, 0))
        rejected, failed = read_counts(metrics)
        tally.rejected.update(rejected)
        tally.failed.update(failed)
        for reason, text in content.config_records.get(R.ERRORS, {}).items():
            tally.note_error(reason, str(text))
        tally.bytes_up += (done + sum(rejected.values())) * payload_bytes(acc.previous)
        arrays = content.array_records[R.ARRAYS].to_torch_state_dict()
        if done and not all(all_finite(t) for t in arrays.values()):
            tally.rejected["non-finite-sums"] += done
            return len(client_ids)
        if done:
            acc.merge_sums(arrays, done)
            tally.ok += done
            tally.loss_sum += float(metrics.get(LOSS_SUM, 0.0))
        return len(client_ids)
