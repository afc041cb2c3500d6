"""The distribution (issue 30): the wheel holds the package, the bundled experiment files, the
licence and the one version; installed in a clean environment it runs a bundled experiment by
name, from the wheel's own copy of fedsim."""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# What building a wheel reads from a checkout.
SOURCES = ("pyproject.toml", "setup.py", "LICENSE", "README.md", "fedsim", "simulations")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (building in place would leave build/ here)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (ROOT / name).is_dir() else {}))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "--disable-pip-version-check", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_the_package_the_experiments_the_licence_and_the_version(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"fedsim_ssl-{PROJECT['version']}.dist-info"
        metadata = email.parser.Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        specs = {p.name: zf.read(f"fedsim/_specs/{p.name}") for p in (ROOT / "simulations").glob("*.yaml")}
        licence = zf.read(f"{dist_info}/licenses/LICENSE")

    assert wheel.name == f"fedsim_ssl-{PROJECT['version']}-py3-none-any.whl"
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "fedsim").rglob("*.py")}
    assert sources <= names, sorted(sources - names)  # every module, in every subpackage
    assert specs and all(data == (ROOT / "simulations" / name).read_bytes() for name, data in specs.items())
    assert {n for n in names if n.startswith("fedsim/_specs/")} == {f"fedsim/_specs/{n}" for n in specs}
    assert licence == (ROOT / "LICENSE").read_bytes() and b"Apache License" in licence
    assert (metadata["Name"], metadata["Version"]) == ("fedsim-ssl", PROJECT["version"])
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Requires-Python"] == ">=3.11"
    assert "fedsim = fedsim.cli:app" in entry_points
    assert not any(n.startswith(("tests/", "simulations/", "benchmarks/")) for n in names)


def test_the_source_version_is_pyprojects():
    import fedsim

    assert fedsim.__version__ == fedsim.version() == PROJECT["version"]


def test_pyproject_is_a_valid_flower_app():
    """``flwr run .`` validates pyproject.toml: it needs a static [project] version."""
    from flwr.common.config import validate_fields_in_config

    valid, errors, _ = validate_fields_in_config(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    assert valid, errors


# Extras whose packages cannot be installed next to the tested set (constraints.txt says why).
UNCONSTRAINED_EXTRAS = ("bench", "mlflow")


def test_constraints_pin_every_requirement_exactly():
    import re

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    wanted = [*PROJECT["dependencies"], *(r for name, extra in PROJECT["optional-dependencies"].items()
                                          if name not in UNCONSTRAINED_EXTRAS for r in extra)]
    names = {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", r).group()).lower() for r in wanted}
    assert names - {"fedsim-ssl"} <= set(pins), sorted(names - set(pins))


def _clean_venv(path: Path) -> Path:
    """A new virtual environment that sees the test environment's installed packages (torch,
    flwr, ray, pip...) through a .pth line, but not its fedsim: a .pth line only extends
    sys.path, so the editable install's finder there does not run."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "shared-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_the_installed_wheel_runs_a_bundled_experiment_by_name(wheel, tmp_path):
    python = _clean_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["COLUMNS"] = "200"

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        return proc

    run(str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--disable-pip-version-check",
        str(wheel))
    fedsim = str(tmp_path / "venv" / "bin" / "fedsim")
    where = run(str(python), "-c", "import fedsim, fedsim.specs; print(fedsim.__file__); print(fedsim.specs.specs_dir())")
    package, specs = where.stdout.split()

    assert Path(package).is_relative_to(tmp_path / "venv")  # the wheel's copy, not the checkout's
    assert Path(specs) == Path(package).parent / "_specs"
    assert run(fedsim, "--version").stdout == f"fedsim {PROJECT['version']}\n"  # from the installed metadata
    assert "ldawa_vs_fedavg" in run(fedsim, "list").stdout
    cells = run(fedsim, "bench", "--config", "ldawa_vs_fedavg", "--dry-run", "--out", "bench").stdout.splitlines()
    assert len(cells) == 12 and all(c.startswith("new ") for c in cells)

    done = run(fedsim, "run", "--config", "quickstart", "--rounds", "2", "--clients", "20", "--out", "run",
               timeout=600)

    assert "warning: ldawa: warm-up of 3 rounds covers all 2 rounds" in done.stderr
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"rounds": 2' in summary and '"clients": 20' in summary
    report = run(str(python), "-c", "import sys\nfrom fedsim.cli import app\ntry:\n    app(['report', 'run'])\n"
                                    "finally:\n    print('torch imported:', 'torch' in sys.modules)")
    assert report.stdout.strip().endswith("torch imported: False")
    assert (tmp_path / "run" / "report.html").is_file()
