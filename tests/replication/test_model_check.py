"""Seeded model-check: random crashes, zombies and elections over three replicas.

Each history (tests/replication/sim.py) checks after every step that every acks=all
acknowledged record is in the current leader's log, that replicas agree below their high
watermarks, that a leader's HW never moves back, and one leader per epoch; then it heals every
fault and checks all logs converge and keep every acknowledged record. Negative controls show
the checker can fail: unclean election, and quorum without the epoch-start commit rule.
"""

from __future__ import annotations

import attrs
import pytest

from quorumq.replication import QuorumStrategy, ReplicaProgress
from tests.replication.sim import run_model


@pytest.mark.parametrize(
    ("strategy", "min_insync_replicas", "seeds"),
    [("quorum", 1, 150), ("isr", 2, 150), ("isr", 1, 60)],
    ids=["quorum", "isr-min-insync-2", "isr-min-insync-1"],
)
def test_model_no_acknowledged_record_lost_and_replicas_agree(
    strategy: str, min_insync_replicas: int, seeds: int
) -> None:
    acknowledged = elections = 0
    for seed in range(seeds):
        model = run_model(seed, strategy=strategy, min_insync_replicas=min_insync_replicas)
        assert not model.violations, f"seed {seed}: {model.violations}"
        acknowledged += len(model.acked)
        elections += model.leader_epoch
    # The histories must exercise something: many acks, many leader changes.
    assert acknowledged > seeds * 10
    assert elections > seeds * 3


def test_model_detects_loss_under_unclean_election() -> None:
    failing = [
        seed
        for seed in range(40)
        if run_model(seed, strategy="isr", unclean=True, min_insync_replicas=1).violations
    ]
    assert failing, "unclean election never lost an acknowledged record: checker is blind"


@attrs.frozen
class _CountOnlyQuorum(QuorumStrategy):
    """Quorum without the epoch-start rule: commits earlier epochs' records by counting."""

    def high_watermark(
        self,
        leader_log_end_offset: int,
        progress: object,
        isr: object,
        epoch_start_offset: int = 0,
    ) -> int:
        assert isinstance(progress, dict)
        values: dict[int, ReplicaProgress] = progress
        return super().high_watermark(leader_log_end_offset, values, set(), -1)


def test_model_detects_raft_figure_8_without_the_epoch_start_rule() -> None:
    failing = [
        seed for seed in range(40) if run_model(seed, strategy=_CountOnlyQuorum()).violations
    ]
    assert failing, "counting copies of old-epoch records never broke: checker is blind"


@pytest.mark.parametrize(
    ("strategy", "min_insync_replicas"), [("quorum", 1), ("isr", 2)], ids=["quorum", "isr"]
)
def test_model_flush_messages_1_survives_power_loss(
    strategy: str, min_insync_replicas: int
) -> None:
    for seed in range(80):
        model = run_model(
            seed,
            strategy=strategy,
            min_insync_replicas=min_insync_replicas,
            power_loss=True,
            flush_messages_1=True,
        )
        assert not model.violations, f"seed {seed}: {model.violations}"


@pytest.mark.parametrize(
    ("strategy", "min_insync_replicas"), [("quorum", 1), ("isr", 2)], ids=["quorum", "isr"]
)
def test_model_without_flush_power_loss_can_lose_acknowledged_records(
    strategy: str, min_insync_replicas: int
) -> None:
    # What docs/replication.md says: without flush.messages=1 an ack means "in the page cache of
    # a majority / the ISR"; power losses of several replicas can take acknowledged records.
    failing = [
        seed
        for seed in range(30)
        if run_model(
            seed, strategy=strategy, min_insync_replicas=min_insync_replicas, power_loss=True
        ).violations
    ]
    assert failing


def test_model_quorum_needs_election_reports_to_be_promises() -> None:
    # The contract docs/replication.md gives the controller: a replica's (epoch, LEO) report
    # counts for an election only once it has stopped following older leaders. Without that,
    # a paused old leader and a follower still fetching from it form a majority and commit.
    failing = [
        seed
        for seed in range(30)
        if run_model(seed, strategy="quorum", reports_are_promises=False).violations
    ]
    assert failing
