"""SASL PLAIN and SCRAM: RFC 7677's test vector, a client and server against each other, and
every way a login is refused."""

from __future__ import annotations

import base64

import pytest

from quorumq.errors import SaslAuthenticationFailed
from quorumq.security import (
    SCRAM_SHA_256,
    SCRAM_SHA_512,
    ScramClient,
    ScramCredential,
    ScramServer,
    check_plain,
    credential_for_password,
)

SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")


def lookup_for(
    users: dict[str, str], mechanisms: tuple[str, ...] = (SCRAM_SHA_256, SCRAM_SHA_512)
) -> object:
    creds = {
        (u, m): credential_for_password(m, pw, SALT, 4096)
        for u, pw in users.items()
        for m in mechanisms
    }
    return lambda user, mechanism: creds.get((user, mechanism))


def test_the_server_answers_rfc_7677s_exchange() -> None:
    server = ScramServer(
        SCRAM_SHA_256, lookup_for({"user": "pencil"}), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    first = server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = server.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert server.user == "user"


@pytest.mark.parametrize("mechanism", [SCRAM_SHA_256, SCRAM_SHA_512])
def test_our_client_and_server_agree_and_a_wrong_password_fails(mechanism: str) -> None:
    lookup = lookup_for({"a,b=c": "secret"})
    client = ScramClient(mechanism, "a,b=c", "secret", "cnonce")
    server = ScramServer(mechanism, lookup, "snonce")
    client.check(server.step(client.final(server.step(client.first()))))
    assert server.user == "a,b=c"
    wrong = ScramClient(mechanism, "a,b=c", "guess", "cnonce")
    server = ScramServer(mechanism, lookup, "snonce")
    with pytest.raises(SaslAuthenticationFailed):
        server.step(wrong.final(server.step(wrong.first())))
    assert server.user is None


def test_a_client_refuses_a_server_that_cannot_prove_the_credential() -> None:
    client = ScramClient(SCRAM_SHA_256, "user", "pencil", "cnonce")
    server = ScramServer(SCRAM_SHA_256, lookup_for({"user": "other"}), "snonce")
    client.final(server.step(client.first()))
    with pytest.raises(SaslAuthenticationFailed):
        client.check(b"v=" + base64.b64encode(b"x" * 32))


@pytest.mark.parametrize(
    "messages",
    [
        [b"n=user,r=x"],  # no gs2 header
        [b"y,,n=user,r=x"],  # channel binding asked for
        [b"n,,n=nobody,r=x"],  # unknown user
        [b"n,,n=user,r=x,tokenauth=true"],  # delegation token
        [b"n,,garbage"],
        [b"\xff\xfe"],
        [b"n,,n=user,r=x", b"c=biws,r=x-wrong-nonce,p=AAAA"],
        [b"n,,n=user,r=x", b"c=eSws,r=xsn,p=AAAA"],  # another gs2 header
        [b"n,,n=user,r=x", b"c=biws,r=xsn,p=!!!"],
        [b"n,,n=user,r=x", b"c=biws,r=xsn"],
    ],
)
def test_malformed_scram_messages_fail(messages: list[bytes]) -> None:
    server = ScramServer(SCRAM_SHA_256, lookup_for({"user": "pencil"}), "sn")
    with pytest.raises(SaslAuthenticationFailed):
        for message in messages:
            server.step(message)
    assert server.user is None


def test_a_third_message_fails() -> None:
    lookup = lookup_for({"u": "p"})
    client = ScramClient(SCRAM_SHA_256, "u", "p", "c")
    server = ScramServer(SCRAM_SHA_256, lookup, "s")
    server.step(client.final(server.step(client.first())))
    with pytest.raises(SaslAuthenticationFailed):
        server.step(b"again")


def test_plain_checks_the_password_against_the_scram_credential() -> None:
    lookup = lookup_for({"alice": "s3cret"}, (SCRAM_SHA_512,))
    assert check_plain(b"\0alice\0s3cret", lookup) == "alice"
    assert check_plain(b"alice\0alice\0s3cret", lookup) == "alice"
    for token in (
        b"\0alice\0wrong",
        b"\0bob\0s3cret",
        b"bob\0alice\0s3cret",  # authorising as someone else
        b"alice\0s3cret",
        b"\0\0",
        b"\0alice\0\xff",
    ):
        with pytest.raises(SaslAuthenticationFailed):
            check_plain(token, lookup)


def test_the_stored_credential_holds_no_password() -> None:
    credential = credential_for_password(SCRAM_SHA_256, "pencil", SALT, 4096)
    assert isinstance(credential, ScramCredential)
    assert b"pencil" not in credential.stored_key + credential.server_key + credential.salt
