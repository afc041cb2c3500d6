"""fedsim: federated self-supervised learning simulations on Flower.

Installed as the distribution ``fedsim-ssl`` (the name ``fedsim`` on the package index is
another project); imported as ``fedsim``, run as the ``fedsim`` command.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

DISTRIBUTION = "fedsim-ssl"


@cache
def version() -> str:
    """fedsim's version, written in one place: ``[project] version`` of ``pyproject.toml``
    (static there, as ``flwr run .`` requires).

    From a source checkout it is read from the checkout's ``pyproject.toml``, so it is right
    even when the environment's installed metadata is older or under another name; an
    installed wheel reads its distribution's metadata.
    """
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == DISTRIBUTION:
            return str(project["version"])
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> str:  # ``fedsim.__version__`` is computed on first use
    if name == "__version__":
        return version()
    raise AttributeError(f"module 'fedsim' has no attribute {name!r}")
