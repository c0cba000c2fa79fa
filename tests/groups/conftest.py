"""A tiny shell around GroupCoordinator: keeps the answers, writes appends to an in-memory log."""

from __future__ import annotations

import random

import pytest

from quorumq.errors import ErrorCode
from quorumq.groups import (
    GroupConfig,
    GroupCoordinator,
    GroupResult,
    JoinGroupResult,
    Step,
    SyncGroupResult,
)

PROTOCOLS = [("range", b"sub-range"), ("roundrobin", b"sub-rr")]


class Shell:
    """Plays the broker: records every completion (each handle once), appends to ``log`` and
    acknowledges writes at once unless ``auto_ack`` is off."""

    def __init__(self, coordinator: GroupCoordinator | None = None, *, auto_ack: bool = True):
        self.coordinator = coordinator or GroupCoordinator(
            GroupConfig(initial_rebalance_delay_ms=0), rng=random.Random(0)
        )
        for partition in range(self.coordinator.config.offsets_topic_num_partitions):
            self.coordinator.load_partition(partition)
        self.auto_ack = auto_ack
        self.now_ms = 0
        self.log: list[tuple[int, bytes, bytes | None]] = []
        self.responses: dict[int, GroupResult] = {}
        self.unacked: list[int] = []

    def run(self, step: Step) -> Step:
        for completion in step.completions:
            assert completion.handle not in self.responses, "a handle was answered twice"
            self.responses[completion.handle] = completion.result
        for append in step.appends:
            for key, value in append.records:
                self.log.append((append.partition, key, value))
            if self.auto_ack:
                self.ack(append.append_id)
            else:
                self.unacked.append(append.append_id)
        return step

    def ack(self, append_id: int, error: ErrorCode = ErrorCode.NONE) -> Step:
        return self.run(self.coordinator.on_append_done(append_id, error, self.now_ms))

    def tick(self, advance_ms: int = 0) -> Step:
        self.now_ms += advance_ms
        return self.run(self.coordinator.tick(self.now_ms))

    def join(
        self,
        group: str = "g",
        member_id: str = "",
        *,
        client_id: str = "client",
        protocols: list[tuple[str, bytes]] | None = None,
        session_timeout_ms: int = 10_000,
        rebalance_timeout_ms: int = 30_000,
        instance_id: str | None = None,
        require_known: bool = False,
    ) -> int:
        step = self.run(
            self.coordinator.join_group(
                group_id=group,
                member_id=member_id,
                client_id=client_id,
                session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=rebalance_timeout_ms,
                protocol_type="consumer",
                protocols=PROTOCOLS if protocols is None else protocols,
                group_instance_id=instance_id,
                require_known_member_id=require_known,
                now_ms=self.now_ms,
            )
        )
        assert step.handle is not None
        return step.handle

    def joined(self, handle: int) -> JoinGroupResult:
        response = self.responses[handle]
        assert isinstance(response, JoinGroupResult)
        return response

    def sync(
        self,
        member: JoinGroupResult,
        assignments: dict[str, bytes] | None = None,
        group: str = "g",
    ) -> int:
        step = self.run(
            self.coordinator.sync_group(
                group_id=group,
                generation_id=member.generation_id,
                member_id=member.member_id,
                assignments=assignments or {},
                now_ms=self.now_ms,
            )
        )
        assert step.handle is not None
        return step.handle

    def synced(self, handle: int) -> SyncGroupResult:
        response = self.responses[handle]
        assert isinstance(response, SyncGroupResult)
        return response


@pytest.fixture
def shell() -> Shell:
    return Shell()
