"""Command-line front ends of issue 25: ``fedsim export`` and the ``fedsim deploy`` commands.

``fedsim/cli.py`` mounts them (``app.command("export")``, ``app.add_typer(deploy_app)``); the
work is done in :mod:`fedsim.export` and :mod:`fedsim.deploy`. A user-caused error (bad
path, bad option, missing file) is one line on stderr and exit code 2, as elsewhere in fedsim.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from fedsim.config import ConfigError
from fedsim.server.progress import error

err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print one line (at most ~300 characters) to stderr and exit with ``code``."""
    error(message, err)
    raise typer.Exit(code)


def export_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory written by fedsim run."),
    format: str = typer.Option("onnx", "--format", "-f", metavar="onnx|torchscript",
                               help="onnx (checked with onnxruntime) or torchscript (checked with torch.jit.load)."),
    out: Path = typer.Option(None, "--out", "-o", metavar="FILE|DIR", show_default=False,
                             help="Output file, or a folder to write encoder.onnx / encoder.pt into "
                                  "(default RUN_DIR/encoder.onnx or RUN_DIR/encoder.pt)."),
    weights: str = typer.Option(None, "--weights", metavar="NAME", show_default=False,
                                help="Weights file in RUN_DIR (default model.pt, else checkpoint.pt), "
                                     "e.g. best_knn_top1.pt."),
    samples: int = typer.Option(16, "--samples", metavar="N", help="Held-out inputs the output check runs on."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
    external_weights: bool = typer.Option(False, "--external-weights",
                                          help="Allow a --weights file outside RUN_DIR."),
    trust_plugins: bool = typer.Option(False, "--trust-plugins",
                                       help="Import the plugin modules the run's config.yaml names (they are code)."),
) -> None:
    """Export the run's encoder, re-parameterised for inference, as ONNX or TorchScript; check the
    written file's outputs against PyTorch's (to 1e-5) and print its size and CPU latency."""
    from fedsim.export import ExportCheckFailed, export_run

    try:
        report = export_run(run_dir, format, out=out, weights=weights, samples=samples, force=force,
                            external_weights=external_weights, trust_plugins=trust_plugins)
    except ConfigError as e:
        fail(str(e))
    except ExportCheckFailed as e:
        fail(str(e), code=1)
    for line in report.lines():
        typer.echo(line)


def check_port(port: int, flag: str) -> None:
    """A TCP port is 1..65535 (:class:`ConfigError` otherwise)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"{flag}: {port} is not a TCP port; choose one in 1..65535")


deploy_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                         help="Run fedsim on edge boxes: TLS material and keys, a SuperLink, SuperNodes, runs.")


@deploy_app.command("certs")
def deploy_certs(
    out: Path = typer.Argument(..., metavar="OUT", help="New folder for ca.crt, ca.key, server.crt, server.key."),
    hosts: str = typer.Option(..., "--hosts", metavar="LIST",
                              help="Names SuperNodes use to reach the SuperLink, comma-separated "
                                   "(IP addresses and DNS names), e.g. 127.0.0.1,server.local."),
    days: int = typer.Option(365, "--days", metavar="N", help="Validity of the certificates."),
) -> None:
    """Write a certificate authority and a SuperLink certificate whose subjectAltName covers --hosts."""
    from fedsim.deploy.certs import DeployError, parse_hosts, write_certs

    try:
        if days < 1:
            raise DeployError(f"--days: {days} must be at least 1")
        paths = write_certs(out, parse_hosts(hosts), days=days)
    except ConfigError as e:
        fail(str(e))
    for name, path in paths.items():
        typer.echo(f"{path}{'  (private key, mode 0600: keep it on the server)' if name.endswith('.key') else ''}")


@deploy_app.command("keys")
def deploy_keys(
    out: Path = typer.Argument(..., metavar="OUT", help="Folder for supernode-<i>.key / supernode-<i>.pub."),
    nodes: int = typer.Option(..., "--nodes", metavar="N", help="Key pairs to write (one per box)."),
    start: int = typer.Option(1, "--start", metavar="I", help="Number of the first pair (to add boxes later)."),
) -> None:
    """Write SuperNode authentication key pairs (ECDSA P-384, OpenSSH format, as flwr reads them)."""
    from fedsim.deploy.certs import write_node_keys

    try:
        pairs = write_node_keys(out, nodes, start=start)
    except ConfigError as e:
        fail(str(e))
    for key, pub in pairs:
        typer.echo(f"{key}  (private, mode 0600: copy to its box)  {pub}  (public: the SuperLink registers it)")


@deploy_app.command("superlink")
def deploy_superlink(
    certs: Path = typer.Option(None, "--certs", metavar="DIR", show_default=False,
                               help="Folder from fedsim deploy certs (ca.crt, server.crt, server.key)."),
    keys: list[Path] = typer.Option([], "--keys", metavar="DIR|FILE.pub",
                                    help="SuperNode public keys to register (a folder of *.pub, or files)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="Port of the Fleet and Control APIs."),
    insecure: bool = typer.Option(False, "--insecure", help="No TLS and no SuperNode authentication (see the error "
                                                            "without it for what that means)."),
    database: Path = typer.Option(None, "--database", metavar="FILE", show_default=False,
                                  help="Keep the SuperLink's state in this SQLite file (default: in memory)."),
    log: Path = typer.Option(None, "--log", metavar="FILE", show_default=False, help="Also write Flower's log here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not pass Flower's log through to stderr."),
) -> None:
    """Start Flower's SuperLink with TLS and SuperNode authentication, register the keys, serve until stopped."""
    from fedsim.deploy.certs import DeployError
    from fedsim.deploy.processes import FlwrCli, flower_env, quoted, superlink_plan, wait_for_port
    from fedsim.deploy.supervise import Supervised, open_log, run_service
    import tempfile

    try:
        check_port(port, "--port")
        plan = superlink_plan(certs=certs, keys=keys, host=host, port=port, insecure=insecure, database=database)
        handle = open_log(log)
    except ConfigError as e:
        fail(str(e))
    err.print(f"fedsim deploy superlink: {quoted(plan.argv)}", highlight=False, soft_wrap=True, markup=False)
    child = Supervised(plan.argv, env=flower_env(), log=handle, echo=not quiet)
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host

    def register(child: Supervised) -> None:
        wait_for_port(local, port, timeout=120, process=child.process)
        with tempfile.TemporaryDirectory(prefix="fedsim-flwr-") as tmp:
            cli = FlwrCli(f"{local}:{port}", plan.ca_cert, Path(tmp))
            for pub in plan.public_keys:
                err.print(f"registered {pub.name}: SuperNode id {cli.register(pub)}", highlight=False)
        err.print(f"SuperLink ready on {host}:{port} ({'TLS, ' + str(len(plan.public_keys)) + ' SuperNode keys' if not insecure else 'INSECURE'})",
                  highlight=False)

    try:
        code, signals = run_service(child, ready=register)
    except DeployError as e:
        fail(f"SuperLink: {e}; {child.why()}", code=1)
    if code != 0 and not signals:
        fail(f"flower-superlink exited with code {code}: {child.why()}", code=1)


@deploy_app.command("supernode")
def deploy_supernode(
    superlink: str = typer.Option(..., "--superlink", metavar="HOST:PORT", help="The SuperLink (a name in its certificate)."),
    certs: Path = typer.Option(None, "--certs", metavar="DIR", show_default=False,
                               help="Folder holding the deployment's ca.crt (copied from the server)."),
    key: Path = typer.Option(None, "--key", metavar="FILE", show_default=False,
                             help="This box's private key (supernode-<i>.key from fedsim deploy keys)."),
    data_dir: Path = typer.Option(None, "--data-dir", metavar="DIR", show_default=False,
                                  help="This box's own data folder (runs of folder tasks need it; generated "
                                       "tasks train --partition-id of --num-partitions instead)."),
    state_dir: Path = typer.Option(Path("fedsim-state"), "--state-dir", metavar="DIR",
                                   help="Where this box keeps its clients' own state between rounds."),
    partition_id: int = typer.Option(None, "--partition-id", metavar="K", show_default=False,
                                     help="Which share of a generated task this box trains (box K trains what "
                                          "simulated client K would)."),
    num_partitions: int = typer.Option(None, "--num-partitions", metavar="N", show_default=False,
                                       help="How many shares the generated task is split into (with --partition-id)."),
    port: int = typer.Option(0, "--port", help="Local port of this SuperNode's app runtime (0: any free port)."),
    device: str = typer.Option("cpu", "--device", help="Where this box trains: cpu, cuda or auto."),
    insecure: bool = typer.Option(False, "--insecure", help="Connect without TLS and authentication."),
    max_wait: float = typer.Option(None, "--max-wait", metavar="SECONDS", show_default=False,
                                   help="Give up connecting after this long (default: keep retrying)."),
    plugins: str = typer.Option(None, "--plugins", metavar="MODULES", show_default=False,
                                help="Plugin modules this box may import for a run, comma-separated "
                                     "(default none: a run naming plugins fails on this box)."),
    log: Path = typer.Option(None, "--log", metavar="FILE", show_default=False, help="Also write Flower's log here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not pass Flower's log through to stderr."),
) -> None:
    """Start a SuperNode on this box: fedsim's ClientApp trains on --data-dir (folder tasks) or on share
    --partition-id of --num-partitions (generated tasks), serve until stopped."""
    from fedsim.deploy.processes import flower_env, free_port, quoted, supernode_argv
    from fedsim.deploy.supervise import Supervised, open_log, run_service

    try:
        if device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"--device: {device!r} is not one of cpu, cuda, auto")
        if port != 0:  # 0: any free port
            check_port(port, "--port")
        argv = supernode_argv(superlink=superlink, certs=certs, key=key, data_dir=data_dir, state_dir=state_dir,
                              port=port or free_port(), device=device, partition_id=partition_id,
                              num_partitions=num_partitions, insecure=insecure, max_wait=max_wait,
                              plugins=plugins)
        handle = open_log(log)
    except ConfigError as e:
        fail(str(e))
    err.print(f"fedsim deploy supernode: {quoted(argv)}", highlight=False, soft_wrap=True, markup=False)
    child = Supervised(argv, env=flower_env(), log=handle, echo=not quiet)
    code, signals = run_service(child)
    if code != 0 and not signals:
        fail(f"flower-supernode exited with code {code}: {child.why()}", code=1)


@deploy_app.command("run")
def deploy_run_command(
    superlink: str = typer.Option(..., "--superlink", metavar="HOST:PORT", help="The SuperLink."),
    config: Path = typer.Option(None, "--config", "-c", metavar="FILE", show_default=False,
                                help="Experiment YAML; federation.clients = the number of SuperNodes."),
    certs: Path = typer.Option(None, "--certs", metavar="DIR", show_default=False, help="Folder holding ca.crt."),
    insecure: bool = typer.Option(False, "--insecure", help="Connect without TLS."),
    out: Path = typer.Option(None, "--out", metavar="DIR", show_default=False,
                             help="Run directory on this (the SuperLink's) host (default runs/<time>-deploy-<strategy>)."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override any config key."),
    timeout: float = typer.Option(24 * 3600.0, "--timeout", metavar="SECONDS", help="Stop following after this long."),
    max_failed_fraction: float = typer.Option(
        0.5, "--max-failed-fraction", metavar="F",
        help="Exit 4 when more than this fraction of all client updates failed (a box that failed every "
             "round it was sampled for exits 4 anyway)."),
    cold: bool = typer.Option(False, "--cold-clientapp",
                              help="Run fedsim's ClientApp in Flower's fresh process per message (imports and "
                                   "model build every round) instead of each box's warm fedsim process."),
) -> None:
    """Submit an experiment through Flower's run API, follow its rounds, write the run directory.

    Exit codes: 0 the run finished and every box did its part; 1 the run failed or stopped
    without a summary; 2 bad input; 4 the run finished but a box failed every round it was
    sampled for, or more than --max-failed-fraction of the updates failed (one line per box).
    """
    import time as _time

    from fedsim.config import parse_override
    from fedsim.deploy.submit import EXIT_BOXES_FAILED, BoxesFailed, deploy_run

    try:
        overrides = dict(parse_override(item) for item in set_)
        run_dir = out or Path(f"runs/{_time.strftime('%Y%m%d-%H%M%S')}-deploy")
        summary = deploy_run(superlink=superlink, config=config, overrides=overrides, run_dir=run_dir, certs=certs,
                             insecure=insecure, timeout=timeout, max_failed_fraction=max_failed_fraction, warm=not cold,
                             echo=lambda s: err.print(s, highlight=False, markup=False, soft_wrap=True))
    except ConfigError as e:
        fail(str(e))
    except BoxesFailed as e:
        for line in e.lines:
            err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        typer.echo(e.summary.get("run_dir", str(run_dir)))
        raise typer.Exit(EXIT_BOXES_FAILED) from None
    except RuntimeError as e:
        fail(str(e), code=1)
    typer.echo(summary.get("run_dir", str(run_dir)))


@deploy_app.command("unit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def deploy_unit(
    ctx: typer.Context,
    role: str = typer.Argument(..., metavar="superlink|supernode", help="Which service."),
    out: Path = typer.Option(None, "--out", "-o", metavar="FILE", show_default=False,
                             help="Write the unit here (default: print it)."),
    user: str = typer.Option(None, "--user", show_default=False, help="The service's user (default: you)."),
    workdir: Path = typer.Option(None, "--workdir", metavar="DIR", show_default=False,
                                 help="Its working directory (default: here); FLWR_HOME is DIR/flwr-home."),
) -> None:
    """Write a systemd unit that runs fedsim deploy superlink|supernode with the options after
    the role (absolute paths), restarts it on failure and starts it at boot.

    Example: fedsim deploy unit supernode --superlink server.local:8000 --certs /etc/fedsim/certs
    --key /etc/fedsim/supernode-1.key --data-dir /data/box1 --state-dir /var/lib/fedsim -o fedsim-supernode.service
    """
    from fedsim.deploy.service import unit_text

    try:
        text = unit_text(role, list(ctx.args), user=user, workdir=workdir)
    except ConfigError as e:
        fail(str(e))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"{out}: install with sudo cp {out} /etc/systemd/system/ && sudo systemctl daemon-reload && "
                   f"sudo systemctl enable --now {out.stem}")
