"""Which packages the wheel holds; all other metadata is in pyproject.toml.

Besides ``fedsim`` and its subpackages, the experiment files of ``simulations/`` ship as the
data folder ``fedsim/_specs`` (found by :mod:`fedsim.specs`). pyproject.toml alone cannot
say this: its package discovery and a package whose folder lies elsewhere do not combine.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["fedsim", "fedsim.*"]), "fedsim._specs"],
    package_dir={"fedsim._specs": "simulations"},
)
