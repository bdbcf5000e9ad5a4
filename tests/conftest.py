"""Settings shared by every test directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION_DIR = ROOT / "tests" / "integration"

# scripts/ is not a package (its files are run directly); putting it on the path lets the
# integration fixtures import the same MariaDB harness the shell scripts use.
sys.path.insert(0, str(ROOT / "scripts"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration, so `-m "not integration"` runs without MariaDB."""
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)
