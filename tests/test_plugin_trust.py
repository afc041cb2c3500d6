"""Plugins are code: only the user's own config names them. A run directory's config.yaml,
a bench cell's, and the server's records on a worker node import nothing by themselves."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.deploy.processes import node_config
from fedsim.plugins import allowed_plugins, import_plugins
from fedsim.factory import task_for
from tests.server.test_resume_checks import one_line_exit_2, tiny, write_run

runner = CliRunner()


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path holding plugin modules; ``marker`` files show which were imported."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    def write(name: str, body: str = "") -> str:
        (folder / f"{name}.py").write_text(textwrap.dedent(f"""
            import pathlib
            pathlib.Path({str(folder / (name + '.imported'))!r}).write_text("yes")
        """) + textwrap.dedent(body))
        sys.modules.pop(name, None)
        return name

    write.folder = folder  # type: ignore[attr-defined]
    yield write
    for path in folder.glob("*.py"):
        sys.modules.pop(path.stem, None)


def _imported(plugin_dir, name: str) -> bool:
    return (plugin_dir.folder / f"{name}.imported").exists()


@pytest.mark.parametrize("body, words", [
    ("raise RuntimeError('boom')", "failed while being imported: RuntimeError: boom"),  # case: raises
    ("import sys; sys.exit(0)", "failed while being imported: SystemExit: 0"),  # case: exits 0
])
def test_a_failing_plugin_is_one_line_naming_module_and_exception(plugin_dir, body, words):
    name = plugin_dir("rel_bad_plugin", body)
    with pytest.raises(ValueError, match=words) as info:
        import_plugins([name])
    assert "\n" not in str(info.value) and repr(name) in str(info.value)
    result = runner.invoke(app, ["run", "--check", "--set", f"plugins=[{name}]"])
    assert result.exit_code == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_working_directory_is_on_the_path_for_plugins(tmp_path, monkeypatch):
    # Prepare: a plugin beside the user, and sys.path as the `fedsim` script has it (no cwd)
    (tmp_path / "rel_cwd_plugin.py").write_text("VALUE = 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd(), str(tmp_path))])
    sys.modules.pop("rel_cwd_plugin", None)
    # Execute
    import_plugins(["rel_cwd_plugin"])
    # Assert
    assert sys.modules["rel_cwd_plugin"].VALUE == 7
    sys.modules.pop("rel_cwd_plugin")


def test_resume_does_not_import_a_run_dir_s_plugins_unless_trusted(tmp_path, plugin_dir):
    # Prepare: a run whose config.yaml names a plugin module (written as if by someone else)
    name = plugin_dir("rel_run_plugin")
    run = write_run(tmp_path / "run", tiny(plugins=[name]))
    (plugin_dir.folder / f"{name}.imported").unlink()
    sys.modules.pop(name)
    # Execute / Assert: refused, one line, not imported
    line = one_line_exit_2(runner.invoke(app, ["run", "--check", "--resume", str(run)]))
    assert f"plugins: names plugin modules {name}" in line and "--trust-plugins" in line
    assert not _imported(plugin_dir, name)
    # with --trust-plugins the user takes it on
    result = runner.invoke(app, ["run", "--check", "--resume", str(run), "--trust-plugins"])
    assert result.exit_code == 0, result.output
    assert _imported(plugin_dir, name)


def test_export_and_report_do_not_import_a_run_dir_s_plugins(tmp_path, plugin_dir):
    import torch

    name = plugin_dir("rel_export_plugin")
    exp = tiny(plugins=[name])
    run = write_run(tmp_path / "run", exp)
    torch.save(task_for(exp).build_model().state_dict(), run / "model.pt")
    (run / "summary.json").write_text("{}")
    (plugin_dir.folder / f"{name}.imported").unlink()
    sys.modules.pop(name)
    # Execute
    exported = runner.invoke(app, ["export", str(run), "-f", "torchscript"])
    reported = runner.invoke(app, ["report", str(run)])
    # Assert
    assert exported.exit_code == 2 and "--trust-plugins" in exported.output, exported.output
    assert reported.exit_code == 0, reported.output
    assert not _imported(plugin_dir, name)


def test_a_worker_node_imports_only_the_plugins_its_own_config_lists():
    assert allowed_plugins([], None) == []
    assert allowed_plugins(["a"], "a, b") == ["a"]
    with pytest.raises(ValueError, match="plugin module\\(s\\) evil, which this node's own config does not list"):
        allowed_plugins(["a", "evil"], "a")
    with pytest.raises(ValueError, match="--plugins"):
        allowed_plugins(["a"], None)


def test_deploy_supernode_plugins_go_into_its_node_config(tmp_path):
    text = node_config(data_dir=tmp_path, state_dir=tmp_path, device="cpu", partition_id=None,
                       num_partitions=None, plugins="mytask,mymodel")
    assert '"plugins" = "mytask,mymodel"' in text
    assert "\"plugins\"" not in node_config(data_dir=tmp_path, state_dir=tmp_path, device="cpu", partition_id=None,
                                        num_partitions=None)
