"""LeaderTransfers: the active controller's memory of quorum preferred elections waiting for
their leader to drain (pure)."""

from __future__ import annotations

from quorumq.controller.image import LeaderTransfer, LeaderTransfers, MetadataImage

from .test_elections import _changed, _moved_off_preferred, _topic


def _off_preferred() -> tuple[MetadataImage, int, int]:
    """A quorum topic whose partition 0 is led by another replica than its preferred one:
    (image, leader, preferred)."""
    image, leader = _moved_off_preferred(_topic("quorum"))
    return image, leader, image.topics["t"].partitions[0].replicas[0]


def test_a_transfer_is_told_to_its_leader_until_drained_then_proposed() -> None:
    image, leader, preferred = _off_preferred()
    epoch = image.topics["t"].partitions[0].leader_epoch
    transfers = LeaderTransfers().for_epoch(image.controller_epoch)
    transfer = transfers.begin(image, "t", 0, 1_000, 5_000)
    assert transfer == LeaderTransfer("t", 0, leader, epoch, preferred, 6_000)
    assert transfers.begin(image, "t", 0, 2_000, 5_000) == transfer  # kept, deadline and all
    assert transfers.instructions_for(leader) == [transfer]
    assert transfers.instructions_for(preferred) == []
    assert transfers.take_ready(image, 2_000) == []  # neither drained nor due
    # Claims from another broker, or for another epoch, do not count.
    assert not transfers.record_drained(preferred, [("t", 0, epoch)])
    assert not transfers.record_drained(leader, [("t", 0, epoch - 1), ("t", 1, epoch)])
    assert transfers.take_ready(image, 2_000) == []
    assert transfers.record_drained(leader, [("t", 0, epoch)])
    assert not transfers.record_drained(leader, [("t", 0, epoch)])  # once
    assert transfers.instructions_for(leader) == []  # drained: nothing more to tell
    assert transfers.take_ready(image, 2_000) == [transfer]
    assert transfers.take_ready(image, 2_000) == []  # taken


def test_a_transfer_not_drained_by_its_deadline_is_proposed_anyway() -> None:
    image, _, _ = _off_preferred()
    transfers = LeaderTransfers()
    transfer = transfers.begin(image, "t", 0, 1_000, 5_000)
    assert transfers.take_ready(image, 5_999) == []
    assert transfers.take_ready(image, 6_000) == [transfer]


def test_no_transfer_without_a_live_leader_other_than_the_preferred_replica() -> None:
    image = _topic("quorum")  # every partition led by its preferred replica
    assert LeaderTransfers().begin(image, "t", 0, 1_000, 5_000) is None
    assert LeaderTransfers().begin(image, "t", 9, 1_000, 5_000) is None
    state = image.topics["t"].partitions[0]
    leaderless = _changed(image, 0, -1, state.isr)
    assert LeaderTransfers().begin(leaderless, "t", 0, 1_000, 5_000) is None


def test_a_transfer_is_dropped_when_its_partition_changes_leader_meanwhile() -> None:
    image, leader, _ = _off_preferred()
    transfers = LeaderTransfers()
    transfers.begin(image, "t", 0, 1_000, 5_000)
    state = image.topics["t"].partitions[0]
    third = next(r for r in state.replicas[1:] if r != leader)
    failed_over = _changed(image, 0, third, state.isr)
    assert transfers.take_ready(failed_over, 9_000) == []  # moot: not proposed
    assert transfers.pending == {}


def test_a_new_controller_epoch_starts_with_no_transfers() -> None:
    image, leader, _ = _off_preferred()
    transfers = LeaderTransfers().for_epoch(image.controller_epoch)
    transfers.begin(image, "t", 0, 1_000, 5_000)
    assert transfers.for_epoch(image.controller_epoch).instructions_for(leader)
    assert transfers.for_epoch(image.controller_epoch + 1).instructions_for(leader) == []
