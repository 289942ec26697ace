"""Benchmarks: ``saga-orchestrator bench`` runs standard workloads in-process (see
``docs/benchmarks.md``).

Importing this package is cheap: the harness (trio, the engine, the store drivers) is imported
only when the command runs.
"""

from .command import register as register
from .command import run as run
