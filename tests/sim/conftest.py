"""``slow`` simulations (many seeds) are opt-in: they run only when ``-m`` names them."""

from __future__ import annotations

import pytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    if "slow" in item.keywords and "slow" not in (item.config.getoption("markexpr") or ""):
        pytest.skip("slow: opt-in with -m slow")
