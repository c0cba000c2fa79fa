"""Topic configuration that the log engine obeys, under Kafka's names and with Kafka's defaults.

A topic's config arrives as ``dict[str, str]`` (CreateTopics, AlterConfigs, the controller's
metadata image). :meth:`LogConfig.from_topic_config` picks the keys the log cares about and
ignores the rest (``min.insync.replicas`` and friends belong to the broker), so the broker can
hand it the whole topic config.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from quorumq.errors import InvalidConfig

LONG_MAX = 9223372036854775807
"""Java's Long.MAX_VALUE: Kafka's "never" for flush.messages / flush.ms."""

INT_MAX = 2147483647

CLEANUP_DELETE = "delete"
CLEANUP_COMPACT = "compact"


@attrs.frozen
class LogConfig:
    """The per-topic settings of one partition log (Kafka's ``LogConfig``).

    ``-1`` for ``retention_ms`` / ``retention_bytes`` means "no limit", as in Kafka.
    """

    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    retention_ms: int = 604800000
    retention_bytes: int = -1
    cleanup_policy: frozenset[str] = frozenset({CLEANUP_DELETE})
    min_compaction_lag_ms: int = 0
    delete_retention_ms: int = 86400000
    max_message_bytes: int = 1048588
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10485760

    @property
    def compact(self) -> bool:
        return CLEANUP_COMPACT in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return CLEANUP_DELETE in self.cleanup_policy

    @classmethod
    def from_topic_config(
        cls, config: Mapping[str, str], *, defaults: LogConfig | None = None
    ) -> LogConfig:
        """Builds a config from Kafka topic config strings; unknown keys are ignored.

        Args:
            config: e.g. ``{"retention.ms": "60000", "cleanup.policy": "compact,delete"}``.
            defaults: values for keys absent from ``config`` (a broker's log.* defaults);
                Kafka's own defaults when None.

        Raises:
            InvalidConfig: a value that is not an integer, out of Kafka's range, or an unknown
                cleanup policy.
        """
        base = defaults if defaults is not None else cls()
        changes: dict[str, object] = {}
        for key, (field, minimum) in _INT_KEYS.items():
            if key in config:
                changes[field] = _parse_int(key, config[key], minimum)
        if "cleanup.policy" in config:
            changes["cleanup_policy"] = _parse_policy(config["cleanup.policy"])
        return attrs.evolve(base, **changes)  # type: ignore[arg-type]

    def to_topic_config(self) -> dict[str, str]:
        """The inverse of :meth:`from_topic_config` (for DescribeConfigs)."""
        out = {key: str(getattr(self, field)) for key, (field, _) in _INT_KEYS.items()}
        out["cleanup.policy"] = ",".join(sorted(self.cleanup_policy))
        return out


# Kafka's config key -> (attribute, smallest accepted value), as in Kafka's LogConfig.
_INT_KEYS: dict[str, tuple[str, int]] = {
    "segment.bytes": ("segment_bytes", 14),
    "segment.ms": ("segment_ms", 1),
    "retention.ms": ("retention_ms", -1),
    "retention.bytes": ("retention_bytes", -1),
    "min.compaction.lag.ms": ("min_compaction_lag_ms", 0),
    "delete.retention.ms": ("delete_retention_ms", 0),
    "max.message.bytes": ("max_message_bytes", 0),
    "flush.messages": ("flush_messages", 1),
    "flush.ms": ("flush_ms", 0),
    "index.interval.bytes": ("index_interval_bytes", 0),
    "segment.index.bytes": ("segment_index_bytes", 8),
}
_INT_LIMITS = {
    "segment.bytes": INT_MAX,
    "max.message.bytes": INT_MAX,
    "segment.index.bytes": INT_MAX,
}


def _parse_int(key: str, value: str, minimum: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidConfig(f"{key}={value!r} is not an integer") from None
    maximum = _INT_LIMITS.get(key, LONG_MAX)
    if not minimum <= number <= maximum:
        raise InvalidConfig(f"{key}={number} is outside [{minimum}, {maximum}]")
    return number


def _parse_policy(value: str) -> frozenset[str]:
    parts = frozenset(part.strip().lower() for part in str(value).split(",") if part.strip())
    if not parts or not parts <= {CLEANUP_DELETE, CLEANUP_COMPACT}:
        raise InvalidConfig(f"cleanup.policy={value!r}: expected delete, compact or both")
    return parts
