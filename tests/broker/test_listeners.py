"""Parsing a broker's listeners: Kafka's ``listeners``, ``advertised.listeners``,
``listener.security.protocol.map`` and ``inter.broker.listener.name``."""

from __future__ import annotations

import pytest

from quorumq.broker import BrokerConfig
from quorumq.broker._listeners import Listener, inter_broker_listener, parse_listeners
from quorumq.errors import InvalidConfig


def test_listeners_take_their_protocol_from_their_name_or_the_map() -> None:
    found = parse_listeners(
        "INTERNAL://127.0.0.1:9092, external://[::1]:9093,SASL_SSL://0.0.0.0:0",
        "INTERNAL:PLAINTEXT,EXTERNAL:sasl_plaintext",
        "EXTERNAL://kafka.example.com:19093",
    )
    assert found == (
        Listener("INTERNAL", "127.0.0.1", 9092, "PLAINTEXT"),
        Listener("EXTERNAL", "::1", 9093, "SASL_PLAINTEXT", "kafka.example.com", 19093),
        Listener("SASL_SSL", "0.0.0.0", 0, "SASL_SSL"),
    )
    assert [(x.tls, x.sasl) for x in found] == [(False, False), (False, True), (True, True)]
    assert inter_broker_listener(found, None).name == "INTERNAL"
    assert inter_broker_listener(found, "external").name == "EXTERNAL"


@pytest.mark.parametrize(
    ("listeners", "protocols", "advertised", "message"),
    [
        ("", None, None, "no listener"),
        ("127.0.0.1:9092", None, None, "NAME://host:port"),
        ("PLAINTEXT://127.0.0.1", None, None, "no port"),
        ("PLAINTEXT://127.0.0.1:http", None, None, "not a number"),
        ("PLAINTEXT://127.0.0.1:70000", None, None, "out of range"),
        ("IN SIDE://127.0.0.1:1", "IN SIDE:PLAINTEXT", None, "letters, digits"),
        ("INTERNAL://127.0.0.1:1", None, None, "has no security protocol"),
        ("INTERNAL://127.0.0.1:1", "INTERNAL:KERBEROS", None, "unknown security protocol"),
        ("INTERNAL://127.0.0.1:1", "INTERNAL", None, "NAME:PROTOCOL"),
        ("PLAINTEXT://127.0.0.1:1", "OTHER:SSL", None, "names no listener OTHER"),
        ("PLAINTEXT://127.0.0.1:1,plaintext://127.0.0.1:2", None, None, "used twice"),
        ("PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:1", None, None, "same port"),
        ("PLAINTEXT://127.0.0.1:1", None, "SSL://h:1", "is not a listener"),
    ],
)
def test_bad_listener_settings_are_refused_in_one_line(
    listeners: str, protocols: str | None, advertised: str | None, message: str
) -> None:
    with pytest.raises(InvalidConfig, match=message):
        parse_listeners(listeners, protocols, advertised)


def test_without_listeners_the_broker_has_one_from_its_security_settings() -> None:
    plain = BrokerConfig(data_dir="/tmp/x", host="127.0.0.2", port=9000, advertised_host="h")
    assert plain.effective_listeners() == (
        Listener("PLAINTEXT", "127.0.0.2", 9000, "PLAINTEXT", "h"),
    )
    secured = BrokerConfig(data_dir="/tmp/x", sasl_mechanisms=("PLAIN",), ssl_certfile="c.pem")
    assert secured.effective_listeners()[0].security_protocol == "SASL_SSL"
    assert secured.inter_broker_listener().name == "SASL_SSL"
    with pytest.raises(InvalidConfig, match="not one of"):
        BrokerConfig(data_dir="/tmp/x", inter_broker_listener_name="OTHER").inter_broker_listener()
