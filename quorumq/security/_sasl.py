"""SASL authentication: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802, RFC 7677), as Kafka
speaks them inside SaslAuthenticate requests (KIP-152).

Pure: the broker's shell passes in the client's tokens, the credential lookup and the server
nonce, and sends back what these return. Brokers never keep passwords: a user's credential is
Kafka's SCRAM form (salt, iterations, StoredKey, ServerKey), from which neither the password nor
a login can be recovered; a PLAIN login is checked by deriving the StoredKey from the password
it carries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import attrs

from quorumq.errors import InvalidRequest, SaslAuthenticationFailed

PLAIN = "PLAIN"
SCRAM_SHA_256 = "SCRAM-SHA-256"
SCRAM_SHA_512 = "SCRAM-SHA-512"
SCRAM_MECHANISMS: dict[str, tuple[int, str]] = {
    SCRAM_SHA_256: (1, "sha256"),
    SCRAM_SHA_512: (2, "sha512"),
}
"""SCRAM mechanism → (Kafka's ScramMechanism number, hashlib name)."""
SASL_MECHANISMS = (PLAIN, SCRAM_SHA_256, SCRAM_SHA_512)

MIN_ITERATIONS = 4096
"""Kafka's bounds on a credential's iteration count (UNACCEPTABLE_CREDENTIAL outside)."""
MAX_ITERATIONS = 16384


@attrs.frozen
class ScramCredential:
    """What a broker stores per user and mechanism (Kafka's ScramCredential)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


CredentialLookup = Callable[[str, str], ScramCredential | None]
"""(user, SCRAM mechanism) → the user's credential for it, or None."""


def mechanism_by_number(number: int) -> str:
    """Kafka's ScramMechanism number → its name.

    Raises:
        InvalidRequest: not 1 (SCRAM-SHA-256) or 2 (SCRAM-SHA-512).
    """
    for name, (n, _) in SCRAM_MECHANISMS.items():
        if n == number:
            return name
    raise InvalidRequest(f"unknown SCRAM mechanism {number}")


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """Hi(password, salt, i): what a client sends in AlterUserScramCredentials."""
    digest = SCRAM_MECHANISMS[mechanism][1]
    return hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations)


def credential_from_salted(
    mechanism: str, salted: bytes, salt: bytes, iterations: int
) -> ScramCredential:
    """The stored form of a salted password."""
    digest = SCRAM_MECHANISMS[mechanism][1]
    client_key = hmac.digest(salted, b"Client Key", digest)
    return ScramCredential(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(digest, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", digest),
    )


def credential_for_password(
    mechanism: str, password: str, salt: bytes, iterations: int = MIN_ITERATIONS
) -> ScramCredential:
    return credential_from_salted(
        mechanism, salted_password(mechanism, password, salt, iterations), salt, iterations
    )


def _failed() -> SaslAuthenticationFailed:
    # One message for every cause: a client learns nothing about which users exist.
    return SaslAuthenticationFailed("Authentication failed: invalid credentials")


def check_plain(token: bytes, lookup: CredentialLookup) -> str:
    """A PLAIN login (``authzid NUL authcid NUL password``); returns the user.

    The password is checked against any SCRAM credential the user has.

    Raises:
        SaslAuthenticationFailed: malformed, an authzid other than the user, or a wrong password.
    """
    parts = token.split(b"\0")
    if len(parts) != 3:
        raise _failed()
    try:
        authzid, user, password = (part.decode() for part in parts)
    except UnicodeDecodeError:
        raise _failed() from None
    if not user or (authzid and authzid != user):
        raise _failed()
    for mechanism in SCRAM_MECHANISMS:
        credential = lookup(user, mechanism)
        if credential is None:
            continue
        derived = credential_for_password(
            mechanism, password, credential.salt, credential.iterations
        )
        if hmac.compare_digest(derived.stored_key, credential.stored_key):
            return user
        raise _failed()
    raise _failed()


def _attributes(message: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise _failed()
        out.setdefault(part[0], part[2:])
    return out


def _unescape(name: str) -> str:
    return name.replace("=2C", ",").replace("=3D", "=")


@attrs.define
class ScramServer:
    """The server side of one SCRAM exchange: two client messages, two answers.

    ``nonce`` is the server's random part (the shell draws it); ``user`` is set once the
    client's proof has been checked.
    """

    mechanism: str
    lookup: CredentialLookup
    nonce: str
    user: str | None = None
    _first_bare: str = ""
    _server_first: str = ""
    _credential: ScramCredential | None = None
    _pending_user: str = ""
    _client_nonce: str = ""

    def step(self, token: bytes) -> bytes:
        """Answers the next client message.

        Raises:
            SaslAuthenticationFailed: malformed, unknown user, wrong proof, or a third message.
        """
        try:
            message = token.decode()
        except UnicodeDecodeError:
            raise _failed() from None
        if not self._server_first:
            return self._first(message)
        if self.user is None and self._credential is not None:
            return self._final(message)
        raise _failed()

    def _first(self, message: str) -> bytes:
        # gs2 header: no channel binding ("n"), no authzid; then the client-first-bare.
        if not message.startswith("n,,"):
            raise _failed()
        bare = message[3:]
        attrs_ = _attributes(bare)
        if "n" not in attrs_ or "r" not in attrs_ or "m" in attrs_:
            raise _failed()
        if attrs_.get("tokenauth") is not None:
            raise _failed()  # delegation tokens are not supported
        credential = self.lookup(_unescape(attrs_["n"]), self.mechanism)
        if credential is None:
            raise _failed()
        self._first_bare = bare
        self._credential = credential
        self._pending_user = _unescape(attrs_["n"])
        self._server_first = "r={}{},s={},i={}".format(
            attrs_["r"],
            self.nonce,
            base64.b64encode(credential.salt).decode(),
            credential.iterations,
        )
        self._client_nonce = attrs_["r"]
        return self._server_first.encode()

    def _final(self, message: str) -> bytes:
        credential = self._credential
        assert credential is not None
        attrs_ = _attributes(message)
        if attrs_.get("c") != base64.b64encode(b"n,,").decode():
            raise _failed()
        if attrs_.get("r") != self._client_nonce + self.nonce or "p" not in attrs_:
            raise _failed()
        without_proof = message[: message.rindex(",p=")]
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        digest = SCRAM_MECHANISMS[self.mechanism][1]
        try:
            proof = base64.b64decode(attrs_["p"], validate=True)
        except ValueError:
            raise _failed() from None
        signature = hmac.digest(credential.stored_key, auth_message, digest)
        if len(proof) != len(signature):
            raise _failed()
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(digest, client_key).digest(), credential.stored_key):
            raise _failed()
        self.user = self._pending_user
        server_signature = hmac.digest(credential.server_key, auth_message, digest)
        return b"v=" + base64.b64encode(server_signature)


@attrs.define
class ScramClient:
    """The client side, for quorumq's own client, the CLI and brokers talking to each other."""

    mechanism: str
    user: str
    password: str
    nonce: str
    _first_bare: str = ""
    _server_signature: bytes = b""

    def first(self) -> bytes:
        name = self.user.replace("=", "=3D").replace(",", "=2C")
        self._first_bare = f"n={name},r={self.nonce}"
        return f"n,,{self._first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        """Raises SaslAuthenticationFailed for an answer that is not SCRAM's server-first."""
        try:
            text = server_first.decode()
            attrs_ = _attributes(text)
            nonce, salt, iterations = attrs_["r"], base64.b64decode(attrs_["s"]), int(attrs_["i"])
        except (UnicodeDecodeError, KeyError, ValueError):
            raise _failed() from None
        if not nonce.startswith(self.nonce) or iterations < MIN_ITERATIONS:
            raise _failed()
        digest = SCRAM_MECHANISMS[self.mechanism][1]
        salted = salted_password(self.mechanism, self.password, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", digest)
        stored_key = hashlib.new(digest, client_key).digest()
        without_proof = f"c={base64.b64encode(b'n,,').decode()},r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, digest)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", digest)
        self._server_signature = hmac.digest(server_key, auth_message, digest)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def check(self, server_final: bytes) -> None:
        """Raises SaslAuthenticationFailed unless the broker proved it knows the credential."""
        expected = b"v=" + base64.b64encode(self._server_signature)
        if not hmac.compare_digest(server_final, expected):
            raise _failed()
