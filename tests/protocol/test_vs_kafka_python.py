"""Our codecs against kafka-python 3's independent ones, byte for byte, in both directions.

For every API and version we speak, random values (hypothesis, drawn from our schema) must
encode to exactly the bytes kafka-python writes for the same value, including the size prefix
and header, and each side must decode the other's bytes back to the value.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.protocol import admin as kp_admin
from kafka.protocol import consumer as kp_consumer
from kafka.protocol import metadata as kp_metadata
from kafka.protocol import producer as kp_producer
from kafka.protocol import sasl as kp_sasl

from quorumq.protocol import (
    ApiKey,
    api_spec,
    codec_versions,
    decode_request,
    decode_request_header,
    decode_response,
    encode_request,
    encode_response,
    frame_bytes,
)
from tests.protocol.kafka_python_bridge import (
    from_kafka_python,
    missing_fields,
    to_kafka_python,
    values,
)

KAFKA_PYTHON: dict[ApiKey, tuple[Any, Any]] = {
    ApiKey.API_VERSIONS: (kp_metadata.ApiVersionsRequest, kp_metadata.ApiVersionsResponse),
    ApiKey.METADATA: (kp_metadata.MetadataRequest, kp_metadata.MetadataResponse),
    ApiKey.PRODUCE: (kp_producer.ProduceRequest, kp_producer.ProduceResponse),
    ApiKey.FETCH: (kp_consumer.FetchRequest, kp_consumer.FetchResponse),
    ApiKey.LIST_OFFSETS: (kp_consumer.ListOffsetsRequest, kp_consumer.ListOffsetsResponse),
    ApiKey.CREATE_TOPICS: (kp_admin.CreateTopicsRequest, kp_admin.CreateTopicsResponse),
    ApiKey.DELETE_TOPICS: (kp_admin.DeleteTopicsRequest, kp_admin.DeleteTopicsResponse),
    ApiKey.DESCRIBE_CONFIGS: (kp_admin.DescribeConfigsRequest, kp_admin.DescribeConfigsResponse),
    ApiKey.INIT_PRODUCER_ID: (
        kp_producer.InitProducerIdRequest,
        kp_producer.InitProducerIdResponse,
    ),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (
        kp_consumer.OffsetForLeaderEpochRequest,
        kp_consumer.OffsetForLeaderEpochResponse,
    ),
    ApiKey.ELECT_LEADERS: (kp_admin.ElectLeadersRequest, kp_admin.ElectLeadersResponse),
    ApiKey.DESCRIBE_CLIENT_QUOTAS: (
        kp_admin.DescribeClientQuotasRequest,
        kp_admin.DescribeClientQuotasResponse,
    ),
    ApiKey.DESCRIBE_ACLS: (kp_admin.DescribeAclsRequest, kp_admin.DescribeAclsResponse),
    ApiKey.CREATE_ACLS: (kp_admin.CreateAclsRequest, kp_admin.CreateAclsResponse),
    ApiKey.DELETE_ACLS: (kp_admin.DeleteAclsRequest, kp_admin.DeleteAclsResponse),
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: (
        kp_admin.DescribeUserScramCredentialsRequest,
        kp_admin.DescribeUserScramCredentialsResponse,
    ),
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: (
        kp_admin.AlterUserScramCredentialsRequest,
        kp_admin.AlterUserScramCredentialsResponse,
    ),
    ApiKey.ALTER_CLIENT_QUOTAS: (
        kp_admin.AlterClientQuotasRequest,
        kp_admin.AlterClientQuotasResponse,
    ),
    ApiKey.FIND_COORDINATOR: (
        kp_metadata.FindCoordinatorRequest,
        kp_metadata.FindCoordinatorResponse,
    ),
    ApiKey.JOIN_GROUP: (kp_consumer.JoinGroupRequest, kp_consumer.JoinGroupResponse),
    ApiKey.SYNC_GROUP: (kp_consumer.SyncGroupRequest, kp_consumer.SyncGroupResponse),
    ApiKey.HEARTBEAT: (kp_consumer.HeartbeatRequest, kp_consumer.HeartbeatResponse),
    ApiKey.LEAVE_GROUP: (kp_consumer.LeaveGroupRequest, kp_consumer.LeaveGroupResponse),
    ApiKey.OFFSET_COMMIT: (kp_consumer.OffsetCommitRequest, kp_consumer.OffsetCommitResponse),
    ApiKey.OFFSET_FETCH: (kp_consumer.OffsetFetchRequest, kp_consumer.OffsetFetchResponse),
    ApiKey.LIST_GROUPS: (kp_admin.ListGroupsRequest, kp_admin.ListGroupsResponse),
    ApiKey.DESCRIBE_GROUPS: (kp_admin.DescribeGroupsRequest, kp_admin.DescribeGroupsResponse),
    ApiKey.ALTER_CONFIGS: (kp_admin.AlterConfigsRequest, kp_admin.AlterConfigsResponse),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (
        kp_admin.IncrementalAlterConfigsRequest,
        kp_admin.IncrementalAlterConfigsResponse,
    ),
    ApiKey.CREATE_PARTITIONS: (
        kp_admin.CreatePartitionsRequest,
        kp_admin.CreatePartitionsResponse,
    ),
    ApiKey.DELETE_RECORDS: (kp_admin.DeleteRecordsRequest, kp_admin.DeleteRecordsResponse),
    ApiKey.DESCRIBE_LOG_DIRS: (
        kp_admin.DescribeLogDirsRequest,
        kp_admin.DescribeLogDirsResponse,
    ),
    ApiKey.DELETE_GROUPS: (kp_admin.DeleteGroupsRequest, kp_admin.DeleteGroupsResponse),
    ApiKey.OFFSET_DELETE: (kp_consumer.OffsetDeleteRequest, kp_consumer.OffsetDeleteResponse),
    ApiKey.SASL_HANDSHAKE: (kp_sasl.SaslHandshakeRequest, kp_sasl.SaslHandshakeResponse),
    ApiKey.SASL_AUTHENTICATE: (kp_sasl.SaslAuthenticateRequest, kp_sasl.SaslAuthenticateResponse),
}

CASES = [
    (api_key, version)
    for api_key, (lo, hi) in sorted(codec_versions().items())
    if api_key in KAFKA_PYTHON
    for version in range(lo, hi + 1)
]


def _id(case: tuple[ApiKey, int]) -> str:
    return f"{case[0].name}-v{case[1]}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_schema_has_every_kafka_field(case: tuple[ApiKey, int]) -> None:
    api_key, version = case
    spec = api_spec(api_key)
    kp_request, kp_response = KAFKA_PYTHON[api_key]
    assert missing_fields(spec.request, kp_request, version) == []
    assert missing_fields(spec.response, kp_response, version) == []


EXAMPLES = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("case", CASES, ids=_id)
@EXAMPLES
@given(data=st.data())
def test_request_bytes_match_kafka_python(case: tuple[ApiKey, int], data: st.DataObject) -> None:
    api_key, version = case
    spec = api_spec(api_key)
    kp_cls = KAFKA_PYTHON[api_key][0]
    value = data.draw(values(spec.request, version))

    ours = frame_bytes(encode_request(api_key, version, 7, "quorumq", value))
    kp_value = to_kafka_python(value, kp_cls, version)
    kp_value.with_header(correlation_id=7, client_id="quorumq")
    assert ours == bytes(kp_value.encode(header=True, framed=True))

    header, body_offset = decode_request_header(ours[4:])
    assert (header.api_key, header.api_version, header.correlation_id) == (api_key, version, 7)
    assert header.client_id == "quorumq"
    assert decode_request(header, ours[4:], body_offset) == value
    decoded = kp_cls.decode(ours[4:], version=version, header=True)
    assert from_kafka_python(decoded, spec.request, version) == value


@pytest.mark.parametrize("case", CASES, ids=_id)
@EXAMPLES
@given(data=st.data())
def test_response_bytes_match_kafka_python(case: tuple[ApiKey, int], data: st.DataObject) -> None:
    api_key, version = case
    spec = api_spec(api_key)
    kp_cls = KAFKA_PYTHON[api_key][1]
    value = data.draw(values(spec.response, version))
    if api_key == ApiKey.API_VERSIONS and value.error_code != 0:
        return  # an error answer is always v0: covered by its own test
    header = decode_request_header(
        frame_bytes(
            encode_request(api_key, version, 9, None, data.draw(values(spec.request, version)))
        )[4:]
    )[0]

    ours = frame_bytes(encode_response(header, value))
    kp_value = to_kafka_python(value, kp_cls, version)
    kp_value.with_header(correlation_id=9)
    assert ours == bytes(kp_value.encode(header=True, framed=True))

    assert decode_response(api_key, version, ours[4:]) == value
    decoded = kp_cls.decode(ours[4:], version=version, header=True)
    assert from_kafka_python(decoded, spec.response, version) == value
