"""Package layout that pyproject.toml alone cannot express: the shipped hardware files.

They stay in ``hwconfigs/`` at the top of the source tree (README and docs name them
``hwconfigs/x.yaml``) and are installed as the data-only package ``accelsim.hwconfigs``, so
``--hw a100_24`` finds them after ``pip install .`` from any directory (accelsim/hw/catalog.py).
Everything else is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["accelsim*"]) + ["accelsim.hwconfigs"],
    package_dir={"accelsim.hwconfigs": "hwconfigs"},
)
