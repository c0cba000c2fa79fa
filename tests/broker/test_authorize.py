"""Every ACL gate, on random requests of every version the broker serves, from a principal
with no ACL at all: what it answers at once, and what its fix adds to an answer, encode at that
version (a gate must never build an answer the wire cannot carry)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumq import protocol as p
from quorumq.broker._authorize import GATES, NO_ANSWER, Caller
from quorumq.security import Authorizer
from tests.protocol.kafka_python_bridge import values

NOBODY = Caller(Authorizer(), "User:nobody", "10.0.0.1")
SERVED = {
    int(key): versions for key, versions in {**p.API_VERSIONS, **p.GROUP_API_VERSIONS}.items()
} | {
    int(p.ApiKey.ELECT_LEADERS): (0, 2),
    int(p.ApiKey.BROKER_HEARTBEAT): (0, 1),
    int(p.ApiKey.DESCRIBE_CLIENT_QUOTAS): (0, 1),
    int(p.ApiKey.ALTER_CLIENT_QUOTAS): (0, 1),
    int(p.ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS): (0, 0),
    int(p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS): (0, 0),
    int(p.ApiKey.DESCRIBE_ACLS): (1, 3),
    int(p.ApiKey.CREATE_ACLS): (1, 3),
    int(p.ApiKey.DELETE_ACLS): (1, 3),
    int(p.ApiKey.ALTER_CONFIGS): (0, 1),
    int(p.ApiKey.CREATE_PARTITIONS): (0, 3),
    int(p.ApiKey.DELETE_RECORDS): (0, 2),
    int(p.ApiKey.DESCRIBE_LOG_DIRS): (1, 4),
    int(p.ApiKey.INCREMENTAL_ALTER_CONFIGS): (0, 1),
}
CASES = [
    (p.ApiKey(key), version)
    for key in sorted(GATES)
    for version in range(SERVED[int(key)][0], SERVED[int(key)][1] + 1)
]


def _empty_answer(api_key: p.ApiKey) -> Any:
    """What a handler might answer to the filtered request: the response with its defaults."""
    response = p.api_spec(api_key).response
    fields = {}
    import attrs

    for field in attrs.fields(response):
        if field.default is attrs.NOTHING:
            fields[field.name] = [] if "Sequence" in str(field.type) else ""
    return response(**fields)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].name}-v{c[1]}")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_denying_gate_answers_in_the_wire_format(
    case: tuple[p.ApiKey, int], data: st.DataObject
) -> None:
    api_key, version = case
    request = data.draw(values(p.api_spec(api_key).request, version))
    decision = GATES[api_key](NOBODY, request)
    header = p.RequestHeader(api_key=api_key, api_version=version, correlation_id=7, client_id="t")
    if decision.deny is not None:
        if decision.deny is NO_ANSWER:
            assert api_key == p.ApiKey.PRODUCE and request.acks == 0
            return
        p.encode_response(header, decision.deny)
        return
    if decision.fix is not None:
        p.encode_response(header, decision.fix(_empty_answer(api_key)))
