"""Kafka error codes and the one exception hierarchy quorumq raises on purpose.

Every error raised on purpose is a :class:`QuorumqError` carrying the Kafka :class:`ErrorCode`
it answers with on the wire. The broker's dispatcher catches ``QuorumqError`` in one place and
writes ``exc.code``; anything else is a bug, logged with its traceback and answered
``UNKNOWN_SERVER_ERROR``. Broken invariants are ``assert`` statements: stop, never retry.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ErrorCode(enum.IntEnum):
    """Kafka's numeric error codes (org.apache.kafka.common.protocol.Errors)."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    INVALID_FETCH_SIZE = 4
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    BROKER_NOT_AVAILABLE = 8
    REPLICA_NOT_AVAILABLE = 9
    MESSAGE_TOO_LARGE = 10
    STALE_CONTROLLER_EPOCH = 11
    OFFSET_METADATA_TOO_LARGE = 12
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    INVALID_REQUIRED_ACKS = 21
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    INVALID_COMMIT_OFFSET_SIZE = 28
    TOPIC_AUTHORIZATION_FAILED = 29
    GROUP_AUTHORIZATION_FAILED = 30
    CLUSTER_AUTHORIZATION_FAILED = 31
    INVALID_TIMESTAMP = 32
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REPLICA_ASSIGNMENT = 39
    INVALID_CONFIG = 40
    NOT_CONTROLLER = 41
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    INVALID_TRANSACTION_TIMEOUT = 50
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTION_COORDINATOR_FENCED = 52
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    SECURITY_DISABLED = 54
    OPERATION_NOT_ATTEMPTED = 55
    KAFKA_STORAGE_ERROR = 56
    LOG_DIR_NOT_FOUND = 57
    SASL_AUTHENTICATION_FAILED = 58
    UNKNOWN_PRODUCER_ID = 59
    REASSIGNMENT_IN_PROGRESS = 60
    DELEGATION_TOKEN_AUTH_DISABLED = 61
    DELEGATION_TOKEN_NOT_FOUND = 62
    DELEGATION_TOKEN_OWNER_MISMATCH = 63
    DELEGATION_TOKEN_REQUEST_NOT_ALLOWED = 64
    DELEGATION_TOKEN_AUTHORIZATION_FAILED = 65
    DELEGATION_TOKEN_EXPIRED = 66
    INVALID_PRINCIPAL_TYPE = 67
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    FETCH_SESSION_ID_NOT_FOUND = 70
    INVALID_FETCH_SESSION_EPOCH = 71
    LISTENER_NOT_FOUND = 72
    TOPIC_DELETION_DISABLED = 73
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    UNSUPPORTED_COMPRESSION_TYPE = 76
    STALE_BROKER_EPOCH = 77
    OFFSET_NOT_AVAILABLE = 78
    MEMBER_ID_REQUIRED = 79
    PREFERRED_LEADER_NOT_AVAILABLE = 80
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82
    ELIGIBLE_LEADERS_NOT_AVAILABLE = 83
    ELECTION_NOT_NEEDED = 84
    NO_REASSIGNMENT_IN_PROGRESS = 85
    GROUP_SUBSCRIBED_TO_TOPIC = 86
    INVALID_RECORD = 87
    UNSTABLE_OFFSET_COMMIT = 88
    THROTTLING_QUOTA_EXCEEDED = 89
    PRODUCER_FENCED = 90
    RESOURCE_NOT_FOUND = 91
    DUPLICATE_RESOURCE = 92
    UNACCEPTABLE_CREDENTIAL = 93
    INCONSISTENT_VOTER_SET = 94
    INVALID_UPDATE_VERSION = 95
    FEATURE_UPDATE_FAILED = 96
    PRINCIPAL_DESERIALIZATION_FAILURE = 97
    SNAPSHOT_NOT_FOUND = 98
    POSITION_OUT_OF_RANGE = 99
    UNKNOWN_TOPIC_ID = 100
    DUPLICATE_BROKER_REGISTRATION = 101
    BROKER_ID_NOT_REGISTERED = 102
    INCONSISTENT_TOPIC_ID = 103
    INCONSISTENT_CLUSTER_ID = 104
    TRANSACTIONAL_ID_NOT_FOUND = 105
    FETCH_SESSION_TOPIC_ID_ERROR = 106
    INELIGIBLE_REPLICA = 107
    NEW_LEADER_ELECTED = 108


class QuorumqError(Exception):
    """Base of every error quorumq raises on purpose.

    ``code`` is what the broker answers on the wire; ``retriable`` mirrors Kafka's
    ``RetriableException`` so clients (ours and the CLI) know whether to try again.
    """

    code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN_SERVER_ERROR
    retriable: ClassVar[bool] = False


# --- record batches and logs -------------------------------------------------------------------


class CorruptRecord(QuorumqError):
    """Bytes that do not form a valid RecordBatch v2 (bad CRC, lengths, magic, varints)."""

    code = ErrorCode.CORRUPT_MESSAGE
    retriable = True  # Kafka treats CORRUPT_MESSAGE as retriable: a resend may arrive intact.


class InvalidRecord(QuorumqError):
    """A well-formed batch that the broker refuses (control batch from a client, bad counts)."""

    code = ErrorCode.INVALID_RECORD


class UnsupportedCompressionType(QuorumqError):
    """A batch whose attributes name a compression codec that does not exist."""

    code = ErrorCode.UNSUPPORTED_COMPRESSION_TYPE


class MessageTooLarge(QuorumqError):
    """A batch larger than the topic's ``max.message.bytes``."""

    code = ErrorCode.MESSAGE_TOO_LARGE


class RecordListTooLarge(QuorumqError):
    """A produce request's record set larger than the broker accepts."""

    code = ErrorCode.RECORD_LIST_TOO_LARGE


class OffsetOutOfRange(QuorumqError):
    """A fetch offset below the log start offset or above the log end offset."""

    code = ErrorCode.OFFSET_OUT_OF_RANGE


class KafkaStorageError(QuorumqError):
    """The log directory failed underneath us (I/O error, disk full)."""

    code = ErrorCode.KAFKA_STORAGE_ERROR
    retriable = True


class InvalidConfig(QuorumqError):
    """A topic or broker config key or value that quorumq does not accept."""

    code = ErrorCode.INVALID_CONFIG


class PolicyViolation(QuorumqError):
    """A request the topic's configuration forbids (DeleteRecords on a compacted topic)."""

    code = ErrorCode.POLICY_VIOLATION


class InvalidTimestamp(QuorumqError):
    """A record timestamp outside what the topic accepts."""

    code = ErrorCode.INVALID_TIMESTAMP


# --- requests, topics, partitions -----------------------------------------------------------------


class InvalidRequest(QuorumqError):
    """A request that parses but makes no sense (or does not parse at all)."""

    code = ErrorCode.INVALID_REQUEST


class UnsupportedVersion(QuorumqError):
    """An API version outside the range this broker advertises."""

    code = ErrorCode.UNSUPPORTED_VERSION


class UnknownTopicOrPartition(QuorumqError):
    """The topic or partition does not exist (yet) on this broker."""

    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    retriable = True


class InvalidTopic(QuorumqError):
    """A topic name Kafka would refuse (empty, too long, bad characters, '.' or '..')."""

    code = ErrorCode.INVALID_TOPIC_EXCEPTION


class TopicAlreadyExists(QuorumqError):
    """CreateTopics for a topic that exists."""

    code = ErrorCode.TOPIC_ALREADY_EXISTS


class InvalidPartitions(QuorumqError):
    """A partition count below one or otherwise impossible."""

    code = ErrorCode.INVALID_PARTITIONS


class InvalidReplicationFactor(QuorumqError):
    """A replication factor below one or above the number of live brokers."""

    code = ErrorCode.INVALID_REPLICATION_FACTOR


class InvalidRequiredAcks(QuorumqError):
    """A produce ``acks`` other than 0, 1 or -1."""

    code = ErrorCode.INVALID_REQUIRED_ACKS


class RequestTimedOut(QuorumqError):
    """A wait (for the high watermark, the controller) that passed its deadline."""

    code = ErrorCode.REQUEST_TIMED_OUT
    retriable = True


# --- leadership and replication ---------------------------------------------------------------


class NotLeaderOrFollower(QuorumqError):
    """This broker is not the leader (for produce) or a replica (for fetch) of the partition."""

    code = ErrorCode.NOT_LEADER_OR_FOLLOWER
    retriable = True


class LeaderNotAvailable(QuorumqError):
    """The partition has no leader right now (an election is under way)."""

    code = ErrorCode.LEADER_NOT_AVAILABLE
    retriable = True


class FencedLeaderEpoch(QuorumqError):
    """The request named an older leader epoch than this replica has seen."""

    code = ErrorCode.FENCED_LEADER_EPOCH
    retriable = True


class UnknownLeaderEpoch(QuorumqError):
    """The request named a newer leader epoch than this replica has seen."""

    code = ErrorCode.UNKNOWN_LEADER_EPOCH
    retriable = True


class NotEnoughReplicas(QuorumqError):
    """acks=all refused before append: fewer in-sync replicas than ``min.insync.replicas``."""

    code = ErrorCode.NOT_ENOUGH_REPLICAS
    retriable = True


class NotEnoughReplicasAfterAppend(QuorumqError):
    """acks=all appended, but the ISR shrank below ``min.insync.replicas`` before commit."""

    code = ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    retriable = True


class NotController(QuorumqError):
    """A controller write sent to a node that is not the active controller."""

    code = ErrorCode.NOT_CONTROLLER
    retriable = True


class StaleControllerEpoch(QuorumqError):
    """A decision stamped with an older controller epoch than the one we follow."""

    code = ErrorCode.STALE_CONTROLLER_EPOCH


class InvalidUpdateVersion(QuorumqError):
    """A compare-and-set partition change based on a partition epoch that has moved on."""

    code = ErrorCode.INVALID_UPDATE_VERSION


class StaleBrokerEpoch(QuorumqError):
    """A heartbeat or decision naming an older registration (broker epoch) of the broker."""

    code = ErrorCode.STALE_BROKER_EPOCH


class BrokerIdNotRegistered(QuorumqError):
    """A heartbeat or decision for a broker id the controller has no registration for."""

    code = ErrorCode.BROKER_ID_NOT_REGISTERED


class IneligibleReplica(QuorumqError):
    """An ISR change that adds a replica which is fenced or not in the replica set."""

    code = ErrorCode.INELIGIBLE_REPLICA


class PreferredLeaderNotAvailable(QuorumqError):
    """A preferred-leader election whose preferred replica is not live or not caught up."""

    code = ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    retriable = True


class EligibleLeadersNotAvailable(QuorumqError):
    """An election (unclean, or preferred) with no replica allowed to lead."""

    code = ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE
    retriable = True


class ElectionNotNeeded(QuorumqError):
    """An election for a partition already led by the replica it would elect."""

    code = ErrorCode.ELECTION_NOT_NEEDED


class InvalidReplicaAssignment(QuorumqError):
    """A manual replica assignment with unknown brokers, duplicates or uneven sizes."""

    code = ErrorCode.INVALID_REPLICA_ASSIGNMENT


# --- idempotent producer ------------------------------------------------------------------------


class OutOfOrderSequenceNumber(QuorumqError):
    """A producer batch whose first sequence leaves a gap after the last one we stored."""

    code = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


class DuplicateSequenceNumber(QuorumqError):
    """A retried producer batch that is already in the log."""

    code = ErrorCode.DUPLICATE_SEQUENCE_NUMBER


class InvalidProducerEpoch(QuorumqError):
    """A producer epoch older than the one the partition has seen for that producer id."""

    code = ErrorCode.INVALID_PRODUCER_EPOCH


class UnknownProducerId(QuorumqError):
    """A producer id the partition has no state for, with a non-zero sequence."""

    code = ErrorCode.UNKNOWN_PRODUCER_ID


# --- groups -------------------------------------------------------------------------------------


class CoordinatorNotAvailable(QuorumqError):
    """No group coordinator can serve the group right now."""

    code = ErrorCode.COORDINATOR_NOT_AVAILABLE
    retriable = True


class NotCoordinator(QuorumqError):
    """This broker is not the coordinator of the group."""

    code = ErrorCode.NOT_COORDINATOR
    retriable = True


class CoordinatorLoadInProgress(QuorumqError):
    """The coordinator is still loading the group's state from ``__consumer_offsets``."""

    code = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    retriable = True


class IllegalGeneration(QuorumqError):
    """A group request from an older generation."""

    code = ErrorCode.ILLEGAL_GENERATION


class UnknownMemberId(QuorumqError):
    """A group request from a member the coordinator does not know."""

    code = ErrorCode.UNKNOWN_MEMBER_ID


class RebalanceInProgress(QuorumqError):
    """The group is rebalancing; the member must rejoin."""

    code = ErrorCode.REBALANCE_IN_PROGRESS


class MemberIdRequired(QuorumqError):
    """JoinGroup v4+ without a member id: the answer carries the id to rejoin with."""

    code = ErrorCode.MEMBER_ID_REQUIRED


class InconsistentGroupProtocol(QuorumqError):
    """A member whose protocols share none with the group."""

    code = ErrorCode.INCONSISTENT_GROUP_PROTOCOL


class InvalidGroupId(QuorumqError):
    """An empty or otherwise invalid group id."""

    code = ErrorCode.INVALID_GROUP_ID


class GroupIdNotFound(QuorumqError):
    """DeleteGroups of a group the coordinator does not have."""

    code = ErrorCode.GROUP_ID_NOT_FOUND


class GroupSubscribedToTopic(QuorumqError):
    """OffsetDelete of a topic a member of the group still reads."""

    code = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC


class NonEmptyGroup(QuorumqError):
    """DeleteGroups of a group that still has members."""

    code = ErrorCode.NON_EMPTY_GROUP


class InvalidSessionTimeout(QuorumqError):
    """A session timeout outside the broker's allowed range."""

    code = ErrorCode.INVALID_SESSION_TIMEOUT


class FencedInstanceId(QuorumqError):
    """A static member (``group.instance.id``) whose member id was replaced by a newer instance."""

    code = ErrorCode.FENCED_INSTANCE_ID


# --- security -----------------------------------------------------------------------------------


class TopicAuthorizationFailed(QuorumqError):
    """The principal lacks the ACL for this operation on this topic."""

    code = ErrorCode.TOPIC_AUTHORIZATION_FAILED


class GroupAuthorizationFailed(QuorumqError):
    """The principal lacks the ACL for this operation on this group."""

    code = ErrorCode.GROUP_AUTHORIZATION_FAILED


class ClusterAuthorizationFailed(QuorumqError):
    """The principal lacks the ACL for this cluster-wide operation."""

    code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED


class SaslAuthenticationFailed(QuorumqError):
    """Wrong user name or password."""

    code = ErrorCode.SASL_AUTHENTICATION_FAILED


class UnsupportedSaslMechanism(QuorumqError):
    """The broker does not offer the SASL mechanism the client asked for."""

    code = ErrorCode.UNSUPPORTED_SASL_MECHANISM


class IllegalSaslState(QuorumqError):
    """A SASL request out of order (authenticate before a handshake, or after a failure)."""

    code = ErrorCode.ILLEGAL_SASL_STATE


class UnacceptableCredential(QuorumqError):
    """A SCRAM credential Kafka would refuse (iterations out of range, an empty salt or name)."""

    code = ErrorCode.UNACCEPTABLE_CREDENTIAL


class ResourceNotFound(QuorumqError):
    """The named resource (a user's credential, for example) does not exist."""

    code = ErrorCode.RESOURCE_NOT_FOUND


class DuplicateResource(QuorumqError):
    """A request names the same resource twice."""

    code = ErrorCode.DUPLICATE_RESOURCE


def error_for_code(code: int) -> type[QuorumqError]:
    """Returns the exception class that answers with ``code`` (for clients decoding responses).

    Codes with no dedicated class map to :class:`QuorumqError` itself; callers read the code off
    the instance they build, so nothing is lost.
    """
    return _BY_CODE.get(code, QuorumqError)


def _index_by_code() -> dict[int, type[QuorumqError]]:
    table: dict[int, type[QuorumqError]] = {}
    stack: list[type[QuorumqError]] = [QuorumqError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls is not QuorumqError:
            table.setdefault(int(cls.code), cls)
    return table


_BY_CODE = _index_by_code()
