"""Fixtures of the fault tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.figures import Figures


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """Collects a fault test's figures and writes them when the test passed its assertions."""
    collected = Figures(request.node.name)
    yield collected
    collected.write()
