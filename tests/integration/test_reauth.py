"""SASL re-authentication (KIP-368, ``connections_max_reauth_ms``): librdkafka logs in again on
its open connections and keeps working; a user deleted meanwhile is cut off at the next
login; a client that does not log in again is closed once its login expires; a second login
may not change the user or the mechanism."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio
from confluent_kafka import Producer

from quorumq import protocol as p
from quorumq.client._connection import SaslConfig, open_connection
from quorumq.errors import ErrorCode
from tests.integration.conftest import BrokerThread
from tests.integration.test_sasl import alter, create_users, librdkafka

REAUTH_MS = 1000


@pytest.fixture
def reauth_broker(tmp_path: Path) -> Any:
    thread = BrokerThread(
        tmp_path / "data",
        sasl_mechanisms=("PLAIN", "SCRAM-SHA-512"),
        sasl_users={"admin": "admin-secret"},
        connections_max_reauth_ms=REAUTH_MS,
    )
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


class _Sender:
    """One librdkafka producer that sends a record every 100 ms while asked to."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.delivered = 0
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.producer = Producer(
            {**conf, "message.timeout.ms": 3000, "error_cb": lambda e: self.errors.append(str(e))}
        )

    def _report(self, error: Any, message: Any) -> None:
        if error:
            self.failed.append(str(error))
        else:
            self.delivered += 1

    def send_for(self, seconds: float, stop_on_error: bool = False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (stop_on_error and (self.failed or self.errors)):
            self.producer.produce("t", b"x", partition=0, on_delivery=self._report)
            self.producer.poll(0.1)
        self.producer.flush(5)


def test_librdkafka_logs_in_again_and_keeps_producing(reauth_broker: BrokerThread) -> None:
    create_users(reauth_broker.port)
    assert reauth_broker.broker is not None and reauth_broker.broker.sasl is not None
    sender = _Sender(librdkafka(reauth_broker.bootstrap, "SCRAM-SHA-512", "bob", "bob-secret"))
    sender.send_for(3.5)
    assert sender.failed == [] and sender.errors == [] and sender.delivered >= 30
    assert reauth_broker.broker.sasl.reauthentications >= 2


def test_a_deleted_user_is_cut_off_at_its_next_login(reauth_broker: BrokerThread) -> None:
    create_users(reauth_broker.port)
    sender = _Sender(librdkafka(reauth_broker.bootstrap, "SCRAM-SHA-512", "bob", "bob-secret"))
    sender.send_for(0.5)
    assert sender.delivered > 0 and not sender.failed
    deletion = p.ScramCredentialDeletion(name="bob", mechanism=2)
    assert alter(reauth_broker.port, deletions=[deletion]) == {"bob": 0}
    # The same producer, on the connection it opened while bob existed.
    sender.send_for(2 * REAUTH_MS / 1000 + 3, stop_on_error=True)
    problems = [*sender.failed, *sender.errors]
    assert any("uthentication" in e for e in problems), problems


def test_an_expired_login_closes_the_connection(reauth_broker: BrokerThread) -> None:
    async def main() -> None:
        admin = SaslConfig("PLAIN", "admin", "admin-secret")
        everything = p.MetadataRequest(topics=None)
        async with open_connection("127.0.0.1", reauth_broker.port, sasl=admin) as conn:
            await conn.request(p.ApiKey.METADATA, 8, everything)
            await trio.sleep(REAUTH_MS / 1000 + 0.3)
            with pytest.raises(ConnectionError):
                await conn.request(p.ApiKey.METADATA, 8, everything)

    trio.run(main)


@pytest.mark.parametrize(
    "second",
    [("PLAIN", b"\0alice\0alice-secret"), ("SCRAM-SHA-512", None)],
    ids=["another-user", "another-mechanism"],
)
def test_a_second_login_keeps_the_user_and_the_mechanism(
    reauth_broker: BrokerThread, second: tuple[str, bytes | None]
) -> None:
    create_users(reauth_broker.port)

    async def main() -> None:
        admin = SaslConfig("PLAIN", "admin", "admin-secret")
        mechanism, token = second
        async with open_connection("127.0.0.1", reauth_broker.port, sasl=admin) as conn:
            # The same user again: fine, and the login lasts again.
            await conn.request(
                p.ApiKey.SASL_HANDSHAKE, 1, p.SaslHandshakeRequest(mechanism="PLAIN")
            )
            again = await conn.request(
                p.ApiKey.SASL_AUTHENTICATE,
                1,
                p.SaslAuthenticateRequest(auth_bytes=b"\0admin\0admin-secret"),
            )
            assert again.error_code == 0 and again.session_lifetime_ms == REAUTH_MS
            if token is None:
                with pytest.raises(ConnectionError):
                    await conn.request(
                        p.ApiKey.SASL_HANDSHAKE, 1, p.SaslHandshakeRequest(mechanism=mechanism)
                    )
                return
            await conn.request(
                p.ApiKey.SASL_HANDSHAKE, 1, p.SaslHandshakeRequest(mechanism=mechanism)
            )
            refused = await conn.request(
                p.ApiKey.SASL_AUTHENTICATE, 1, p.SaslAuthenticateRequest(auth_bytes=token)
            )
            assert refused.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
            with pytest.raises(ConnectionError):
                await conn.request(p.ApiKey.METADATA, 8, p.MetadataRequest(topics=None))

    trio.run(main)
