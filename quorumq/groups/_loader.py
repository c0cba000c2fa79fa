"""Rebuild group state from a ``__consumer_offsets`` partition after a coordinator moves.

Theory of operation: when this broker becomes leader of a ``__consumer_offsets`` partition, the
shell reads the partition from its log start to its high watermark and feeds every record, in
offset order, to a :class:`GroupStateLoader`. Because the topic is compacted, what matters is the
latest value per key: a later record replaces an earlier one, a tombstone (null value) deletes
it. The result is handed to :meth:`GroupCoordinator.complete_load`. Offsets survive the death of
the coordinator's broker because they were in the replicated log before any commit was answered.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from quorumq.groups._records import (
    GroupMetadataKey,
    GroupMetadataValue,
    OffsetAndMetadata,
    OffsetCommitKey,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
)
from quorumq.groups._types import TopicPartition

__all__ = ["GroupStateLoader"]


@attrs.define(eq=False)
class GroupStateLoader:
    """Latest-wins replay of ``(key, value)`` records into groups and committed offsets.

    ``groups`` holds the latest metadata per group (a tombstone removes it); ``offsets`` the
    latest committed offset per group and partition. ``skipped`` counts records whose key belongs
    to another coordinator (KIP-848 or share groups) and were ignored.
    """

    groups: dict[str, GroupMetadataValue] = attrs.Factory(dict)
    offsets: dict[str, dict[TopicPartition, OffsetAndMetadata]] = attrs.Factory(dict)
    skipped: int = 0

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Applies one record of the partition, in offset order.

        Raises:
            InvalidRecord: a key or value that does not decode. The shell should treat this as
                a corrupt partition (Kafka fails the load the same way), not skip it.
        """
        decoded = decode_key(key)
        if decoded is None:
            self.skipped += 1
        elif isinstance(decoded, OffsetCommitKey):
            tp = TopicPartition(decoded.topic, decoded.partition)
            per_group = self.offsets.setdefault(decoded.group_id, {})
            if value is None:
                per_group.pop(tp, None)
                if not per_group:
                    del self.offsets[decoded.group_id]
            else:
                per_group[tp] = decode_offset_commit_value(value)
        else:
            assert isinstance(decoded, GroupMetadataKey)
            if value is None:
                self.groups.pop(decoded.group_id, None)
            else:
                self.groups[decoded.group_id] = decode_group_metadata_value(value)

    def apply_all(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Applies records in order (see :meth:`apply`)."""
        for key, value in records:
            self.apply(key, value)

    def group_ids(self) -> set[str]:
        """Returns every group with metadata or at least one committed offset."""
        return set(self.groups) | set(self.offsets)
