"""``fedsim export RUN_DIR``: the run's encoder, re-parameterised for inference, as ONNX or
TorchScript, checked against PyTorch on held-out inputs.

Steps:

1. Read the run directory: ``config.yaml`` (the run's resolved experiment) and its weights
   (``model.pt`` of a finished run, else the last round's ``checkpoint.pt``, or any
   ``best_<metric>.pt`` with ``weights=``). A missing or corrupt directory or file is one
   :class:`ExportError` line (exit 2).
2. Build the task and model as the server did and take the encoder (``model.backbone``: the
   task's single encoder prefix ``backbone.``).
3. Fold training-only branches into the inference form (:func:`fold_for_inference`) with
   the encoder's own ``reparameterize()`` (duck-typed: any model may have one):
   AudioRepInceptionNeXt folds its three depthwise conv+BN branches into one depthwise conv;
   CSLA/Hyper-Search VGG and RepGhost models return their plain twins (merged kernels,
   :func:`fedsim.models.repopt_vgg.init_plain_from_csla`). RepOpt models trained plain
   (``repopt_vgg``, ``repghost``) are already in inference form.
4. Export (``torch.onnx.export`` with the dynamo exporter and a dynamic batch axis, or
   ``torch.jit.trace``), load the written file back (onnxruntime / ``torch.jit.load``), and
   require its outputs to equal the folded PyTorch encoder's to ``TOLERANCE`` on held-out
   inputs; report the file's size and batch-1 CPU latency beside PyTorch's.
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsim.atomic import plain_write_mode
from fedsim.config import ConfigError
from fedsim.factory import task_for

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-5  # max |exported - PyTorch| over the sample outputs
FOLD_TOLERANCE = 1e-4  # max |folded - unfolded|, relative to the largest output magnitude
SAMPLES = 16  # held-out inputs the check runs on
LATENCY_REPEATS = 30


class ExportError(ConfigError):
    """A run directory, weights file or option export cannot use (one line, exit 2)."""


class ExportCheckFailed(RuntimeError):
    """The exported file's outputs differ from PyTorch's by more than the tolerance (exit 1)."""


@dataclass
class ExportReport:
    """What :func:`export_run` wrote and measured."""

    path: Path
    format: str
    size_bytes: int
    max_abs_diff: float  # exported file vs folded PyTorch encoder
    fold_max_abs_diff: float  # folded vs trained (unfolded) encoder
    folded: list[str] = field(default_factory=list)
    params_trained: int = 0
    params_exported: int = 0
    latency_ms: float = 0.0  # exported runtime, batch 1, median
    latency_ms_pytorch: float = 0.0  # folded PyTorch encoder, batch 1, median
    input_shape: tuple[int, ...] = ()

    def lines(self) -> list[str]:
        fold = ", ".join(self.folded) if self.folded else "nothing to fold"
        return [
            f"wrote {self.path} ({self.format}, {self.size_bytes / 1024:.1f} KiB)",
            f"re-parameterised: {fold}; parameters {self.params_trained} -> {self.params_exported}; "
            f"folded vs trained max |diff| {self.fold_max_abs_diff:.2e}",
            f"check: max |{self.format} - pytorch| = {self.max_abs_diff:.2e} on {self.input_shape[0]} held-out "
            f"inputs of shape {tuple(self.input_shape[1:])} (tolerance {TOLERANCE:g})",
            f"CPU latency, batch 1, 1 thread, median of {LATENCY_REPEATS}: {self.format} "
            f"{self.latency_ms:.3f} ms, pytorch {self.latency_ms_pytorch:.3f} ms",
        ]


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # torch raises many types for a bad file
        raise ExportError(f"{path} is not a readable weights file ({type(err).__name__}: corrupt, "
                          "truncated or not written by fedsim)") from None
    if isinstance(state, dict) and "global" in state and isinstance(state["global"], dict):
        state = state["global"]  # checkpoint.pt
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{path} holds no state dict of tensors; not a fedsim model file")
    return state


def run_weights(run_dir: Path, weights: str | None = None, *, external: bool = False) -> Path:
    """The weights file to export: ``weights`` (a file name in the run directory; a path
    elsewhere only with ``external``), else ``model.pt``, else ``checkpoint.pt``."""
    if weights is not None:
        path = run_dir / weights
        if not external and run_dir.resolve() not in path.resolve().parents:
            raise ExportError(f"--weights {weights}: not a file in {run_dir}; weights from elsewhere may not fit "
                              "the run's config, pass --external-weights to use them anyway")
        if not path.is_file():
            found = sorted(p.name for p in run_dir.glob("*.pt"))
            raise ExportError(f"{path} does not exist; weights files in {run_dir}: {', '.join(found) or 'none'}")
        return path
    for name in ("model.pt", "checkpoint.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise ExportError(f"{run_dir} has neither model.pt nor checkpoint.pt: the run completed no round")


def load_run(run_dir: str | Path, weights: str | None = None, *, external_weights: bool = False,
             trust_plugins: bool = False) -> tuple[Any, Any, nn.Module]:
    """``(experiment, task, trained model)`` of a run directory (:class:`ExportError` if unusable)."""
    from fedsim.config import load_config
    from fedsim.data.folders import DataFolderError

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} is not a directory; give a run directory written by fedsim run")
    if not (run_dir / "config.yaml").is_file():
        raise ExportError(f"{run_dir} holds no config.yaml: not a fedsim run directory")
    state = _load_weights(run_weights(run_dir, weights, external=external_weights))
    try:
        exp = load_config(run_dir / "config.yaml", trust_plugins=trust_plugins)
        task = task_for(exp)
        model = task.build_model()
    except ConfigError as err:
        raise ExportError(f"{run_dir / 'config.yaml'}: {err}") from None
    except (DataFolderError, ValueError) as err:
        raise ExportError(f"{run_dir}: cannot rebuild the run's task or model: {err}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        first = first if len(first) <= 120 else first[:117] + "..."  # torch lists every key
        raise ExportError(f"the weights do not fit the run's model {exp.model.name!r} ({first})") from None
    task.registered_name = exp.task.name
    return exp, task, model.eval()


def encoder_and_inputs(task: Any, model: nn.Module, samples: int = SAMPLES) -> tuple[nn.Module, torch.Tensor]:
    """The task's encoder module and held-out inputs for it (its kNN query set)."""
    from fedsim.tasks.classification import EvalData

    prefixes = tuple(task.encoder_prefixes)
    data = task.eval_data() if prefixes == ("backbone.",) and hasattr(task, "eval_data") else None
    if not isinstance(data, EvalData) or not hasattr(model, "backbone"):
        name = getattr(task, "registered_name", type(task).__name__)
        raise ExportError(f"task {name!r}: not supported by export, which writes a single-input encoder "
                          f"(model.backbone); this task's encoder is {', '.join(prefixes)} with inputs of its own")
    return model.backbone, data.query_x[:samples].float()


def fold_for_inference(encoder: nn.Module) -> tuple[nn.Module, list[str]]:
    """An eval-mode copy of ``encoder`` in its inference form, and what was folded
    (``encoder`` is not changed). Inference outputs are equal up to float rounding.

    The form is the model's own: an encoder that can be re-parameterised has a
    ``reparameterize()`` method returning its inference form (itself folded in place, or a
    plain twin); one without it, or whose method changes nothing, is exported as it is.
    """
    folded = copy.deepcopy(encoder).eval()
    hook = getattr(folded, "reparameterize", None)
    if not callable(hook):
        return folded, []
    before = _layout(folded)
    folded = hook().eval()
    after = _layout(folded)
    if after == before:
        return folded, []
    return folded, [f"{type(encoder).__name__}.reparameterize(): {_changed(before, after)}"]


def _layout(module: nn.Module) -> Counter[str]:
    """How many modules of each class ``module`` holds."""
    return Counter(type(m).__name__ for m in module.modules())


def _changed(before: Counter[str], after: Counter[str]) -> str:
    """The (at most three) module counts that changed most, e.g. ``CSLAVGGBlock 6 -> 0``."""
    names = sorted((n for n in set(before) | set(after) if before[n] != after[n]),
                   key=lambda n: (-abs(before[n] - after[n]), n))
    return ", ".join(f"{n} {before[n]} -> {after[n]}" for n in names[:3])


def _median_ms(call: Callable[[], Any], repeats: int = LATENCY_REPEATS) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _write_onnx(encoder: nn.Module, x: torch.Tensor, path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise ExportError("--format onnx needs onnx, onnxscript and onnxruntime: "
                          "pip install 'fedsim-ssl[export]'") from None
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(encoder, (x,), str(path), input_names=["input"], output_names=["features"],
                      dynamo=True, dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    onnx.checker.check_model(str(path), full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return (lambda a: session.run(None, {name: a})[0]), "onnxruntime"


def _write_torchscript(encoder: nn.Module, x: torch.Tensor,
                       path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    import warnings

    with warnings.catch_warnings():  # torch.jit is deprecated upstream but still what C++/mobile loads
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(encoder, x)
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.no_grad()
    def run(a: np.ndarray) -> np.ndarray:
        return loaded(torch.from_numpy(a)).numpy()

    return run, "torchscript"


def export_encoder(trained: nn.Module, x: torch.Tensor, path: str | Path, fmt: str) -> ExportReport:
    """Fold ``trained`` (an encoder), export it to ``path`` as ``fmt``, check the written file
    on inputs ``x`` and time it. The file is removed if the check fails
    (:class:`ExportCheckFailed`)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    path = Path(path)
    torch.set_num_threads(1)  # latency on one core, as onnxruntime's session below
    trained = copy.deepcopy(trained).eval()
    folded, notes = fold_for_inference(trained)
    with torch.no_grad():
        before, expected = trained(x), folded(x)
    scale = max(1.0, float(before.abs().max()))
    fold_diff = float((before - expected).abs().max())
    if fold_diff > FOLD_TOLERANCE * scale:
        raise ExportCheckFailed(f"folding changed the encoder's outputs by {fold_diff:.2e} (> {FOLD_TOLERANCE:g} "
                                f"x {scale:.3g}); not exported")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _write_onnx if fmt == "onnx" else _write_torchscript
    run, _ = writer(folded, x, path)
    got = run(x.numpy())
    diff = float(np.abs(got - expected.numpy()).max()) if got.shape == tuple(expected.shape) else float("inf")
    if not diff <= TOLERANCE:
        path.unlink(missing_ok=True)
        raise ExportCheckFailed(f"{fmt} outputs differ from PyTorch's by {diff:.2e} (> {TOLERANCE:g}) on "
                                f"held-out inputs; nothing written")
    one = x[:1]
    with torch.no_grad():
        torch_ms = _median_ms(lambda: folded(one))
    one_np = one.numpy()
    return ExportReport(path=path, format=fmt, size_bytes=path.stat().st_size, max_abs_diff=diff,
                        fold_max_abs_diff=fold_diff, folded=notes,
                        params_trained=sum(p.numel() for p in trained.parameters()),
                        params_exported=sum(p.numel() for p in folded.parameters()),
                        latency_ms=_median_ms(lambda: run(one_np)), latency_ms_pytorch=torch_ms,
                        input_shape=tuple(x.shape))


def export_target(run_dir: Path, fmt: str, out: str | Path | None, *, force: bool,
                  weights_file: Path | None = None) -> Path:
    """The file to write: ``out``, ``out/encoder.<ext>`` when ``out`` is a directory, or
    ``RUN_DIR/encoder.<ext>``. An existing file (or link) is replaced only with ``force``, the
    weights being exported never; the folder must be writable (:class:`ExportError`)."""
    default = f"encoder{SUFFIX[fmt]}"
    target = Path(out) if out is not None else run_dir / default
    if target.is_dir() or (out is not None and str(out).endswith(os.sep)):
        target = target / default
    if weights_file is not None and target.exists() and target.resolve() == weights_file.resolve():
        raise ExportError(f"--out {target} is the weights file being exported; choose another file")
    if (target.exists() or target.is_symlink()) and not force:
        raise ExportError(f"--out {target} already exists; choose another file, or pass --force to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as err:
        raise ExportError(f"--out {target}: cannot write in {target.parent} ({err.strerror or err})") from None
    return target


def export_run(run_dir: str | Path, fmt: str, *, out: str | Path | None = None, weights: str | None = None,
               samples: int = SAMPLES, force: bool = False, external_weights: bool = False,
               trust_plugins: bool = False) -> ExportReport:
    """Export the encoder of the run in ``run_dir`` (default file: ``RUN_DIR/encoder.onnx`` or
    ``RUN_DIR/encoder.pt``; see :func:`export_target`). The file is written beside the target
    and moved into place only once its check passed, so a failed export replaces nothing."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if samples < 1:
        raise ExportError(f"--samples: {samples} must be at least 1")
    run_dir = Path(run_dir)
    _, task, model = load_run(run_dir, weights, external_weights=external_weights, trust_plugins=trust_plugins)
    target = export_target(run_dir, fmt, out, force=force,
                           weights_file=run_weights(run_dir, weights, external=external_weights))
    encoder, x = encoder_and_inputs(task, model, samples)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=SUFFIX[fmt])
    os.close(fd)
    try:
        os.chmod(tmp, plain_write_mode(target))  # the exporters rewrite the file in place, keeping its mode
        report = export_encoder(encoder, x, tmp, fmt)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    report.path = target
    return report
