"""Kafka's wire protocol: bytes in, values out. Never imports trio, socket or time.

Subpackages: :mod:`quorumq.protocol.records` (RecordBatch v2).
"""
