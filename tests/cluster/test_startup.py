"""Bad cluster settings fail at start with the error the CLI prints as one line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from quorumq.broker import BrokerConfig, ClusterBroker, ClusterConfig
from quorumq.cli._broker import run_trio
from quorumq.errors import InvalidConfig
from tests.cluster._harness import free_ports


async def _serve(broker: ClusterBroker) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.serve)
        nursery.cancel_scope.cancel()


def test_node_not_among_the_voters(tmp_path: Path) -> None:
    raft, port = free_ports(2)
    broker = ClusterBroker(
        BrokerConfig(data_dir=tmp_path / "d", node_id=3, port=port),
        ClusterConfig(voters=f"0@127.0.0.1:{raft}"),
    )
    with pytest.raises(InvalidConfig, match="not among the controller voters"):
        run_trio(_serve, broker)


def test_malformed_voters(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    broker = ClusterBroker(
        BrokerConfig(data_dir=tmp_path / "d", node_id=0, port=port),
        ClusterConfig(voters="zero@nowhere"),
    )
    with pytest.raises(InvalidConfig):
        run_trio(_serve, broker)


def test_raft_port_in_use(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        raft = busy.getsockname()[1]
        broker = ClusterBroker(
            BrokerConfig(data_dir=tmp_path / "d", node_id=0, port=port),
            ClusterConfig(voters=f"0@127.0.0.1:{raft}"),
        )
        with pytest.raises(OSError, match="already in use"):
            run_trio(_serve, broker)
