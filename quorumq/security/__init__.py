"""Security: client byte-rate quotas (SASL and ACLs are not built yet; ``docs/security.md``)."""

from quorumq.security._quotas import (
    ANONYMOUS,
    CLIENT_ID,
    CONSUMER_BYTE_RATE,
    ENTITY_TYPES,
    PRODUCER_BYTE_RATE,
    QUOTA_KEYS,
    USER,
    QuotaEntity,
    QuotaTable,
    QuotaTracker,
    check_quota_value,
    describe_entity,
    quota_entity,
)

__all__ = [
    "ANONYMOUS",
    "CLIENT_ID",
    "CONSUMER_BYTE_RATE",
    "ENTITY_TYPES",
    "PRODUCER_BYTE_RATE",
    "QUOTA_KEYS",
    "USER",
    "QuotaEntity",
    "QuotaTable",
    "QuotaTracker",
    "check_quota_value",
    "describe_entity",
    "quota_entity",
]
