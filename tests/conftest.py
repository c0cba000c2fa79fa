"""Suite-wide options: ``slow`` tests (soak, full compare matrix, many simulation seeds) are
opt-in. They are deselected unless ``-m`` names them (``uv run pytest -m slow``), so the default
run stays bounded for CI on 2 cores."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]
