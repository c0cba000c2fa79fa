"""`quorumq demo`, the README's main job, runs end to end from a fresh process and exits."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_demo_compares_both_modes_and_exits_by_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quorumq", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ, COLUMNS="120"),
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for row in ("quorum acks=all:", "isr acks=all:"):
        assert row in out
    # The acks=all promise holds in both modes: the kill scenario loses no acknowledged record.
    # (Rich wraps the explanation lines wherever the figures put them: compare words.)
    words = " ".join(out.split())
    assert len(re.findall(r"(?<!\d)0 acknowledged records lost", words)) == 2, out[-3000:]
    assert "done" in out
