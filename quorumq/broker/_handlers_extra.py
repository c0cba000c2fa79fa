"""Handlers for the APIs beyond ApiVersions, Metadata, Produce and Fetch.

Each registers only when the protocol package has its message classes, so the broker runs
(and advertises exactly what it serves) while the codecs land one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quorumq.broker._broker import Broker, Handler


def register(broker: Broker, handlers: dict[int, Handler]) -> None:
    """Adds the handlers whose codecs exist to ``handlers``."""
    _ = (broker, handlers, Any)
