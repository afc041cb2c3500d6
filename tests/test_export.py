"""fedsim export: folding for inference, ONNX / TorchScript files checked against PyTorch, and
one-line errors (exit 2) for missing or corrupt run directories."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fedsim.atomic import new_file_mode
from fedsim.cli import app
from fedsim.config import load_config
from fedsim.export import (TOLERANCE, ExportCheckFailed, ExportError, export_encoder, fold_for_inference,
                           load_run)
from fedsim.models.audio_inceptionnext import ThreeWayDepthwise, audio_rep_inceptionnext
from fedsim.models.repghost import PlainGhostModule, csla_ghost
from fedsim.models.repopt_vgg import PlainVGGBlock, csla_vgg
from fedsim.server.outputs import RunWriter
from fedsim.factory import task_for

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")]
runner = CliRunner()


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` in eval mode with random BN statistics and affine weights, random branch
    scales: folding then has something to fold (fresh BN is the identity, zero-init gammas
    would hide a branch)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_var", "bn.weight", "scale_conv", "scale_1x1", "scale_identity")) or \
                    (name.endswith(".weight") and tensor.dim() == 1):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith(("running_mean", ".bias")) and tensor.dim() == 1:
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen))
    return model.eval()


def make_run(tmp_path: Path, model: str, **params: object) -> Path:
    """A run directory as fedsim run leaves it (config.yaml, rounds.jsonl, model.pt) for a
    4-client image run at 16 px, with randomised (not initial) weights."""
    overrides = {"task.name": "image", "task.params.image_size": 16, "model.name": model,
                 "federation.clients": 4, "federation.clients_per_round": 2}
    overrides.update({f"model.params.{k}": v for k, v in params.items()})
    exp = load_config(None, overrides)
    run_dir = tmp_path / "run"
    RunWriter(run_dir, exp.to_yaml())
    torch.save(randomised(task_for(exp).build_model()).state_dict(), run_dir / "model.pt")
    return run_dir


@pytest.mark.parametrize(("build", "kind", "shape"), [
    # AudioRep: three depthwise conv+BN branches (k = 11, 5, 3 here) -> one conv with bias
    (lambda: audio_rep_inceptionnext(1, widths=(8, 16), depths=(1, 1)), ThreeWayDepthwise, (3, 1, 32, 40)),
    # RepVGG CSLA: 3x3 + 1x1 + identity, one BN -> plain 3x3 conv + BN
    (lambda: csla_vgg(1), PlainVGGBlock, (3, 1, 16, 16)),
    # RepGhost CSLA: scaled depthwise + identity -> plain depthwise
    (lambda: csla_ghost(1), PlainGhostModule, (3, 1, 16, 16)),
])
def test_folded_encoder_equals_trained_one_and_has_fewer_parameters(build, kind, shape) -> None:
    # Prepare
    trained = randomised(build())
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    # Execute
    folded, notes = fold_for_inference(trained)
    # Assert
    with torch.no_grad():
        before, after = trained(x), folded(x)
    assert before.abs().max() > 0.1  # outputs are not trivially zero
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in trained.parameters())
    assert len(notes) == 1
    if kind is ThreeWayDepthwise:
        stages = [m for m in folded.modules() if isinstance(m, kind)]
        assert stages and all(m.fused is not None and len(m.branches) == 0 for m in stages)
        assert all(m.fused is None for m in trained.modules() if isinstance(m, kind))  # input untouched
    else:
        assert any(isinstance(m, kind) for m in folded.modules())


@pytest.mark.parametrize("fmt", [pytest.param("onnx", marks=pytest.mark.slow), "torchscript"])
def test_reparameterised_audio_encoder_exports_and_matches_pytorch(tmp_path: Path, fmt: str) -> None:
    # Prepare
    trained = randomised(audio_rep_inceptionnext(1, widths=(8, 16), depths=(1, 1)))
    x = torch.randn(5, 1, 32, 40, generator=torch.Generator().manual_seed(2))
    path = tmp_path / f"enc.{fmt}"
    # Execute
    report = export_encoder(trained, x, path, fmt)
    # Assert: the file on disk, reloaded by its own runtime, gives the trained encoder's outputs
    with torch.no_grad():
        expected = trained(x).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x[:2].numpy()})[0]  # batch axis is dynamic
        assert np.abs(got - expected[:2]).max() < TOLERANCE
    else:
        got = torch.jit.load(str(path))(x).detach().numpy()
        assert np.abs(got - expected).max() < TOLERANCE
    assert report.size_bytes == path.stat().st_size > 0
    assert report.max_abs_diff < TOLERANCE and report.latency_ms > 0 and report.latency_ms_pytorch > 0
    assert report.params_exported < report.params_trained


@pytest.mark.slow
def test_export_cli_writes_checked_onnx_and_torchscript_for_resnet_small(tmp_path: Path) -> None:
    # Prepare
    run_dir = make_run(tmp_path, "resnet_small")
    _, task, model = load_run(run_dir)
    x = task.eval_data().query_x[:6]
    with torch.no_grad():
        expected = model.backbone(x).numpy()
    for fmt, name in (("onnx", "encoder.onnx"), ("torchscript", "encoder.pt")):
        # Execute
        result = runner.invoke(app, ["export", str(run_dir), "--format", fmt, "--samples", "6"])
        # Assert
        assert result.exit_code == 0, result.output
        assert f"wrote {run_dir / name}" in result.output and "CPU latency" in result.output
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == new_file_mode()  # not the temp file's 0o600
        if fmt == "onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(str(run_dir / name), providers=["CPUExecutionProvider"])
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        else:
            got = torch.jit.load(str(run_dir / name))(x).detach().numpy()
        assert got.shape == (6, 64) and np.abs(got - expected).max() < TOLERANCE


def test_export_of_a_csla_run_writes_the_plain_model(tmp_path: Path) -> None:
    # Prepare: CSLA VGG run (2 Hyper-Search steps at build time keep it fast)
    run_dir = make_run(tmp_path, "repvgg_csla", search_steps=2)
    # Execute
    result = runner.invoke(app, ["export", str(run_dir), "-f", "torchscript", "-o", str(tmp_path / "v.pt")])
    # Assert
    assert result.exit_code == 0, result.output
    assert "VGGNet.reparameterize(): CSLAVGGBlock 6 -> 0" in result.output
    names = [n for n, _ in torch.jit.load(str(tmp_path / "v.pt")).named_parameters()]
    assert names and not any("conv_1x1" in n for n in names)  # the 1x1 branch is folded away


def _one_line_exit_2(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


@pytest.mark.parametrize("case", ["missing", "no-config", "no-weights", "corrupt", "wrong-weights", "format"])
def test_bad_run_directory_is_one_line_exit_2(tmp_path: Path, case: str) -> None:
    run_dir = tmp_path / "run"
    if case == "missing":  # no such directory
        _one_line_exit_2(["export", str(run_dir)], "is not a directory")
        return
    run_dir.mkdir()
    if case == "no-config":  # a directory that fedsim did not write
        (run_dir / "model.pt").write_bytes(b"")
        _one_line_exit_2(["export", str(run_dir)], "holds no config.yaml")
        return
    exp = load_config(None, {"federation.clients": 4, "federation.clients_per_round": 2,
                             "task.params.image_size": 16})
    RunWriter(run_dir, exp.to_yaml())
    if case == "no-weights":  # interrupted before round 1
        _one_line_exit_2(["export", str(run_dir)], "neither model.pt nor checkpoint.pt")
    elif case == "corrupt":  # truncated model file
        (run_dir / "model.pt").write_bytes(b"PK\x03\x04 truncated")
        _one_line_exit_2(["export", str(run_dir)], "is not a readable weights file")
    elif case == "wrong-weights":  # weights of another model
        torch.save({"w": torch.zeros(3)}, run_dir / "model.pt")
        _one_line_exit_2(["export", str(run_dir)], "do not fit the run's model")
    else:
        torch.save({"w": torch.zeros(3)}, run_dir / "model.pt")
        _one_line_exit_2(["export", str(run_dir), "--format", "tflite"], "not one of onnx, torchscript")


def test_export_refuses_an_output_that_does_not_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a TorchScript runtime that is off by 1e-3 (as a broken export would be)
    import fedsim.export as export

    real = export._write_torchscript

    def off_by(encoder, x, path):
        run, name = real(encoder, x, path)
        return (lambda a: run(a) + 1e-3), name

    monkeypatch.setattr(export, "_write_torchscript", off_by)
    path = tmp_path / "enc.pt"
    # Execute / Assert
    with pytest.raises(ExportCheckFailed, match="differ from PyTorch's by 1.00e-03"):
        export_encoder(randomised(csla_vgg(1)), torch.randn(2, 1, 16, 16), path, "torchscript")
    assert not path.exists()
    with pytest.raises(ExportError, match="not one of"):
        export_encoder(csla_vgg(1), torch.randn(2, 1, 16, 16), path, "tflite")
