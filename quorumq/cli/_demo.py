"""``quorumq demo``: the main job on an embedded default."""

from __future__ import annotations
