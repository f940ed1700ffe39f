"""Cantor: a config-driven singing voice conversion toolkit (DiffComoSVC recipe).

Install with ``bash install.sh`` (it pins torch first; see README.md).
"""
from setuptools import find_packages, setup

setup(
    name="cantor",
    version="0.1.0",
    description="Config-driven singing voice conversion: DiffComoSVC with consistency distillation",
    python_requires=">=3.10",
    packages=find_packages(include=["cantor*", "bins*", "models*", "modules*", "processors*",
                                    "preprocessors*", "utils*", "evaluation*"]),
    entry_points={"console_scripts": ["cantor=cantor.cli:main"]},
)
