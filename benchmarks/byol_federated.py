"""One federated BYOL variant on the image demo, seed by seed, into a sweep JSON.

The in-process loop of :func:`calibrate.run_seed` (same task, trainer and strategy code as
``fedsim run``) on ``--config`` (default ``simulations/quickstart.yaml``) with ``objective:
byol`` and the given overrides; writes ``benchmarks/results/objectives/sweeps/image-byol-<name>.json``::

    python benchmarks/byol_federated.py --name iid --rounds 6 --set partitioning.kind=iid
    python benchmarks/byol_federated.py --config simulations/byol.yaml --name recipe-tau1 --seeds 2 \
        --every 5 --set task.params.byol_momentum=1.0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
SWEEPS = os.path.join(HERE, "results", "objectives", "sweeps")


def main() -> None:
    from calibrate import run_seed
    from fedsim.config import parse_override

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join("simulations", "quickstart.yaml"),
                        help="the spec the variant changes, relative to the repository")
    parser.add_argument("--name", required=True, help="sweep file suffix: image-byol-<name>.json")
    parser.add_argument("--what", default="", help="one line describing the variant")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--every", type=int, default=2, help="evaluate every this many rounds")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    sets = {"task.params.objective": "byol", "federation.rounds": args.rounds, "evaluation.every": args.every,
            **dict(parse_override(kv) for kv in args.set)}
    start = time.perf_counter()
    results = [run_seed(os.path.join(os.path.dirname(HERE), args.config), sets, int(s)) for s in args.seeds.split(",")]
    out = {"what": args.what, "config": args.config, "set": sets, "wall_s": round(time.perf_counter() - start),
           "results": results}
    os.makedirs(SWEEPS, exist_ok=True)
    with open(os.path.join(SWEEPS, f"image-byol-{args.name}.json"), "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
