"""``quorumq compare``: quorum vs isr under acks 0/1/all, measured (filled in below)."""

from __future__ import annotations
