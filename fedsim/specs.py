"""The bundled experiment files (``simulations/*.yaml``), found by name.

``fedsim run --config quickstart`` and ``fedsim bench --config ldawa_vs_fedavg`` name a
bundled file; a path that exists always wins over a name. An installed wheel holds the files
as the data folder ``fedsim/_specs`` (setup.py maps ``simulations/`` there); a source checkout
(and an editable install) reads the checkout's ``simulations/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from fedsim.config import ConfigError

SUFFIX = ".yaml"


def specs_dir() -> Path:
    """The folder of the bundled experiment files: the package's ``_specs`` when installed from
    a wheel, else the source checkout's ``simulations/``."""
    package = Path(__file__).resolve().parent
    bundled = package / "_specs"
    return bundled if bundled.is_dir() else package.parent / "simulations"


def bundled_specs() -> dict[str, Path]:
    """Name (file name without ``.yaml``) -> path of each bundled experiment file, sorted."""
    folder = specs_dir()
    files = sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []
    return {path.stem: path for path in files}


def resolve_spec(config: str | os.PathLike[str]) -> Path:
    """The experiment file ``config`` names: an existing path as given, else the bundled file
    of that name (with or without ``.yaml``); :class:`ConfigError` (one line) if neither."""
    path = Path(config)
    if path.exists():
        return path
    specs = bundled_specs()
    name = path.name.removesuffix(SUFFIX)
    if path.parent == Path(".") and name in specs:
        return specs[name]
    raise ConfigError(f"config file {str(config)!r} does not exist and names no bundled experiment "
                      f"({', '.join(specs) or 'none found in ' + str(specs_dir())})")


def describe_specs() -> dict[str, str]:
    """Name -> ``run: ...`` or ``bench: ...`` (a bench file has a ``grid:`` section), then the
    first line of the file's leading comment."""
    described = {}
    for name, path in bundled_specs().items():
        text = path.read_text(encoding="utf-8")
        first = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "")
        kind = "bench" if "grid" in (yaml.safe_load(text) or {}) else "run"
        described[name] = f"{kind}: {first}"
    return described
