"""The partition log engine: segments, indexes, recovery, retention, compaction, flush policy.

Sans-I/O in the project's sense: files only, no clock, no threads, no trio. The broker drives it
with ``now_ms`` and runs :meth:`FlushJob.run` in a worker thread (``quorumq.broker._flusher``).
"""

from quorumq.log._cleaner import CompactionResult
from quorumq.log._config import CLEANUP_COMPACT, CLEANUP_DELETE, LONG_MAX, LogConfig
from quorumq.log._index import OffsetIndex, TimeIndex
from quorumq.log._log import (
    CLEAN_SHUTDOWN_FILE,
    AppendInfo,
    FlushJob,
    PartitionLog,
    ReadResult,
    validate_records,
)
from quorumq.log._manager import LogManager, parse_partition_dir_name, partition_dir_name
from quorumq.log._producer_state import (
    BatchMetadata,
    DuplicateBatch,
    ProducerStateEntry,
    ProducerStateManager,
)
from quorumq.log._segment import LogSegment, segment_file_name

__all__ = [
    "CLEANUP_COMPACT",
    "CLEANUP_DELETE",
    "CLEAN_SHUTDOWN_FILE",
    "LONG_MAX",
    "AppendInfo",
    "BatchMetadata",
    "CompactionResult",
    "DuplicateBatch",
    "FlushJob",
    "LogConfig",
    "LogManager",
    "LogSegment",
    "OffsetIndex",
    "PartitionLog",
    "ProducerStateEntry",
    "ProducerStateManager",
    "ReadResult",
    "TimeIndex",
    "parse_partition_dir_name",
    "partition_dir_name",
    "segment_file_name",
    "validate_records",
]
