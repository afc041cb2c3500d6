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

err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def export_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory written by fedsim run."),
    format: str = typer.Option("onnx", "--format", "-f", metavar="onnx|torchscript",
                               help="onnx (checked with onnxruntime) or torchscript (checked with torch.jit.load)."),
    out: Path = typer.Option(None, "--out", "-o", metavar="FILE", show_default=False,
                             help="Output file (default RUN_DIR/encoder.onnx or RUN_DIR/encoder.pt)."),
    weights: str = typer.Option(None, "--weights", metavar="NAME", show_default=False,
                                help="Weights file in RUN_DIR (default model.pt, else checkpoint.pt), "
                                     "e.g. best_knn_top1.pt."),
    samples: int = typer.Option(16, "--samples", metavar="N", help="Held-out inputs the output check runs on."),
) -> None:
    """Export the run's encoder, re-parameterised for inference, as ONNX or TorchScript; check the
    written file's outputs against PyTorch's (to 1e-5) and print its size and CPU latency."""
    from fedsim.export import ExportCheckFailed, export_run

    try:
        report = export_run(run_dir, format, out=out, weights=weights, samples=samples)
    except ConfigError as e:
        fail(str(e))
    except ExportCheckFailed as e:
        fail(str(e), code=1)
    for line in report.lines():
        typer.echo(line)
