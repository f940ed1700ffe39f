"""Lowest layer: config schema and loader, audio I/O, atomic writes, paths. Importing it first runs
:mod:`utils.offline` (usage reports and network look-ups of the packages Cantor uses, off)."""
from utils import offline  # noqa: F401  (before any project module can import a reporting package)
