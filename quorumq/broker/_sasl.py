"""SASL in the broker: the login on a SASL listener, the users it checks against, and
Describe/AlterUserScramCredentials (``quorumq.security`` has the mechanisms themselves).

A connection on a SASL listener may send ApiVersions, SaslHandshake (v1) and SaslAuthenticate
until it has logged in; any other request closes it, as Kafka's ``SaslServerAuthenticator``
does. A failed login is answered with SASL_AUTHENTICATION_FAILED and leaves the connection
unable to do anything but close.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from quorumq import protocol as p
from quorumq.errors import (
    DuplicateResource,
    ErrorCode,
    IllegalSaslState,
    InvalidRequest,
    KafkaStorageError,
    QuorumqError,
    ResourceNotFound,
    SaslAuthenticationFailed,
    UnacceptableCredential,
)
from quorumq.security import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    PLAIN,
    SASL_MECHANISMS,
    SCRAM_MECHANISMS,
    ScramCredential,
    ScramServer,
    check_plain,
    credential_for_password,
    credential_from_salted,
    mechanism_by_number,
)

CREDENTIALS_FILE = "scram_credentials.json"
"""A single broker's users, under ``<data_dir>/meta`` (a cluster keeps them in its image)."""

INTER_BROKER_USER = "__quorumq_broker"
"""The user cluster brokers log in as to each other, with the cluster's shared secret
(``--controller-password``); it cannot be altered over the wire."""

FAILED = "failed"
"""``ConnectionInfo.sasl`` after a failed login: nothing more may be tried on it."""

SASL_KEYS = frozenset({int(p.ApiKey.SASL_HANDSHAKE), int(p.ApiKey.SASL_AUTHENTICATE)})
"""With ApiVersions, what a connection may send before it has logged in; once logged in, only
to log in again (re-authentication, KIP-368), when ``connections_max_reauth_ms`` is set."""

Credentials = Mapping[tuple[str, str], ScramCredential]


def check_mechanisms(mechanisms: tuple[str, ...]) -> tuple[str, ...]:
    """Raises InvalidRequest for a mechanism quorumq does not speak (a broker config error)."""
    upper = tuple(m.upper() for m in mechanisms)
    unknown = [m for m in upper if m not in SASL_MECHANISMS]
    if unknown:
        raise InvalidRequest(
            f"unknown SASL mechanism {unknown[0]} (known: {', '.join(SASL_MECHANISMS)})"
        )
    return upper


def static_credentials(users: Mapping[str, str]) -> dict[tuple[str, str], ScramCredential]:
    """Credentials of the users in the broker's config, for every SCRAM mechanism (each broker
    salts its own; SCRAM only needs the salt to stay the same within one login)."""
    return {
        (user, mechanism): credential_for_password(mechanism, password, secrets.token_bytes(16))
        for user, password in users.items()
        for mechanism in SCRAM_MECHANISMS
    }


@attrs.define(eq=False)
class SaslLogin:
    """The broker's half of SASL: which mechanisms it offers and whose credentials count."""

    mechanisms: tuple[str, ...]
    static: Credentials
    stored: Callable[[], Credentials]
    """The users that can be altered over the wire: the single broker's file, or the image."""
    reauth_ms: int = 0
    """``connections.max.reauth.ms``: how long a login lasts (0: as long as its connection)."""
    lasting_users: frozenset[str] = frozenset()
    """Users whose logins do not expire: the brokers' own, whose client does not log in again
    (its secret changes only with a restart of every broker)."""
    reauthentications: int = 0
    """Successful logins on connections that were logged in already (for tests and logs)."""

    def static_users(self) -> frozenset[str]:
        return frozenset(user for user, _ in self.static)

    def lookup(self, user: str, mechanism: str) -> ScramCredential | None:
        found = self.static.get((user, mechanism))
        return found if found is not None else self.stored().get((user, mechanism))

    def handshake(self, request: Any, info: Any) -> p.SaslHandshakeResponse:
        """SaslHandshake: picks the mechanism for this connection's login."""
        mechanism = request.mechanism.upper()
        if info.sasl is not None:
            raise IllegalSaslState("SaslHandshake after a login was begun")
        if info.principal is not None:
            # KIP-368: a logged-in connection may log in again, with the same mechanism.
            if not self.reauth_ms:
                raise IllegalSaslState("SaslHandshake after a login (re-authentication is off)")
            if mechanism != info.mechanism:
                raise IllegalSaslState(
                    f"re-authentication with {mechanism}, not {info.mechanism} as at first"
                )
        if mechanism not in self.mechanisms:
            return p.SaslHandshakeResponse(
                error_code=int(ErrorCode.UNSUPPORTED_SASL_MECHANISM),
                mechanisms=list(self.mechanisms),
            )
        info.sasl = mechanism
        return p.SaslHandshakeResponse(mechanisms=list(self.mechanisms))

    def authenticate(self, request: Any, info: Any, now: float = 0.0) -> p.SaslAuthenticateResponse:
        """One SaslAuthenticate round; sets ``info.principal`` once the login succeeds, and
        when the login expires (``now``: trio time). A re-authentication must name the same
        user; a failed one leaves the connection logged out."""
        state = info.sasl
        if state is None or state == FAILED:
            raise IllegalSaslState("SaslAuthenticate without a SaslHandshake, or after a login")
        token = bytes(request.auth_bytes)
        try:
            if state == PLAIN:
                return self._logged_in(info, check_plain(token, self.lookup), b"", now)
            if isinstance(state, str):
                state = info.sasl = ScramServer(state, self.lookup, secrets.token_urlsafe(18))
            answer = state.step(token)
            if state.user is not None:
                return self._logged_in(info, state.user, answer, now)
            return p.SaslAuthenticateResponse(auth_bytes=answer)
        except SaslAuthenticationFailed as exc:
            info.sasl = FAILED
            info.principal = None  # a failed re-authentication logs the connection out
            return p.SaslAuthenticateResponse(
                error_code=int(exc.code), error_message=str(exc), auth_bytes=b""
            )

    def _logged_in(
        self, info: Any, user: str, answer: bytes, now: float
    ) -> p.SaslAuthenticateResponse:
        if info.principal is not None:
            if user != info.principal:
                raise SaslAuthenticationFailed("re-authentication as another user")
            self.reauthentications += 1
        info.principal = user
        info.mechanism = info.sasl if isinstance(info.sasl, str) else info.sasl.mechanism
        info.sasl = None
        lifetime_ms = 0
        if self.reauth_ms and user not in self.lasting_users:
            lifetime_ms = self.reauth_ms
            info.session_expires_at = now + lifetime_ms / 1000
        return p.SaslAuthenticateResponse(auth_bytes=answer, session_lifetime_ms=lifetime_ms)


# --- users: the single broker's file ---------------------------------------------------------


def load_credentials(data_dir: Path) -> dict[tuple[str, str], ScramCredential]:
    """Raises KafkaStorageError for a file that exists but does not parse."""
    from quorumq.controller.image import credentials_from_json

    path = Path(data_dir) / "meta" / CREDENTIALS_FILE
    if not path.exists():
        return {}
    try:
        return credentials_from_json(json.loads(path.read_bytes()))
    except (ValueError, QuorumqError) as exc:
        raise KafkaStorageError(f"cannot read {path}: {exc}") from exc


def save_credentials(data_dir: Path, credentials: Credentials) -> None:
    from quorumq.broker._topics import _write_atomically
    from quorumq.controller.image import credentials_to_json

    path = Path(data_dir) / "meta" / CREDENTIALS_FILE
    _write_atomically(path, json.dumps(credentials_to_json(credentials), indent=1).encode())
    os.chmod(path, 0o600)


# --- Describe / AlterUserScramCredentials ----------------------------------------------------

Alteration = tuple[str, str, ScramCredential | None]
"""(user, mechanism, the new credential, or None to delete it)."""


def check_alterations(
    request: Any, credentials: Credentials, reserved: frozenset[str] = frozenset()
) -> list[tuple[str, list[Alteration], QuorumqError | None]]:
    """Checks AlterUserScramCredentials per user, as Kafka does: a user named twice for one
    mechanism fails whole (DUPLICATE_RESOURCE); a bad upsertion, a deletion of a credential
    that does not exist, or a ``reserved`` name (the brokers' own user, and users defined in
    the broker's config, which would shadow a stored one) fails its user. Returns (user, its alterations, its error), users in
    the order first named."""
    by_user: dict[str, list[Alteration]] = {}
    errors: dict[str, QuorumqError] = {}
    seen: set[tuple[str, int]] = set()

    def fail(user: str, error: QuorumqError) -> None:
        by_user.setdefault(user, [])
        errors.setdefault(user, error)

    def named(name: str, number: int) -> str:
        """The checks every entry gets; its mechanism's name."""
        if (name, number) in seen:
            raise DuplicateResource(f"user {name!r} is named twice for one mechanism")
        seen.add((name, number))
        _check_user(name, reserved)
        return _mechanism(number)

    for deletion in request.deletions:
        try:
            mechanism = named(deletion.name, deletion.mechanism)
            if (deletion.name, mechanism) not in credentials:
                raise ResourceNotFound(f"user {deletion.name!r} has no {mechanism} credential")
            by_user.setdefault(deletion.name, []).append((deletion.name, mechanism, None))
        except QuorumqError as exc:
            fail(deletion.name, exc)
    for upsertion in request.upsertions:
        try:
            mechanism = named(upsertion.name, upsertion.mechanism)
            if not MIN_ITERATIONS <= upsertion.iterations <= MAX_ITERATIONS:
                raise UnacceptableCredential(
                    f"iterations must be {MIN_ITERATIONS}-{MAX_ITERATIONS}, not {upsertion.iterations}"
                )
            salt, salted = bytes(upsertion.salt), bytes(upsertion.salted_password)
            if not salt or not salted:
                raise UnacceptableCredential("an empty salt or salted password")
            credential = credential_from_salted(mechanism, salted, salt, upsertion.iterations)
            by_user.setdefault(upsertion.name, []).append((upsertion.name, mechanism, credential))
        except QuorumqError as exc:
            fail(upsertion.name, exc)
    return [(user, alts, errors.get(user)) for user, alts in by_user.items()]


def _check_user(name: str, reserved: frozenset[str]) -> None:
    if not name:
        raise UnacceptableCredential("a user name is not empty")
    if name == INTER_BROKER_USER:
        raise UnacceptableCredential(f"{INTER_BROKER_USER} is the brokers' own user")
    if name in reserved:
        raise UnacceptableCredential(f"user {name!r} is defined in the broker's config")


def _mechanism(number: int) -> str:
    try:
        return mechanism_by_number(number)
    except InvalidRequest as exc:
        raise UnacceptableCredential(str(exc)) from None


def alter_response(
    checked: list[tuple[str, list[Alteration], QuorumqError | None]],
    failure: Callable[[str], tuple[int, str | None]] | None = None,
) -> p.AlterUserScramCredentialsResponse:
    """The answer: each user's own error, else ``failure(user)`` (a write that failed)."""
    results = []
    for user, _, error in checked:
        if error is not None:
            code, message = int(error.code), str(error) or None
        elif failure is not None:
            code, message = failure(user)
        else:
            code, message = 0, None
        results.append(
            p.AlterUserScramCredentialsResult(user=user, error_code=code, error_message=message)
        )
    return p.AlterUserScramCredentialsResponse(results=results)


def apply_alterations(
    credentials: Credentials, alterations: list[Alteration]
) -> dict[tuple[str, str], ScramCredential]:
    out = dict(credentials)
    for user, mechanism, credential in alterations:
        if credential is None:
            out.pop((user, mechanism), None)
        else:
            out[(user, mechanism)] = credential
    return out


def describe_credentials(
    request: Any, credentials: Credentials
) -> p.DescribeUserScramCredentialsResponse:
    """Each named user's mechanisms and iteration counts (never salts or keys); every user
    with a credential when none is named. An unknown user is RESOURCE_NOT_FOUND, a user named
    twice DUPLICATE_RESOURCE."""
    by_user: dict[str, list[p.ScramCredentialInfo]] = {}
    for (user, mechanism), credential in sorted(credentials.items()):
        by_user.setdefault(user, []).append(
            p.ScramCredentialInfo(
                mechanism=SCRAM_MECHANISMS[mechanism][0], iterations=credential.iterations
            )
        )
    names = [u.name for u in request.users] if request.users else sorted(by_user)
    results = []
    for name in dict.fromkeys(names):
        if names.count(name) > 1:
            error: QuorumqError | None = DuplicateResource(f"user {name!r} named twice")
        elif name not in by_user:
            error = ResourceNotFound(f"user {name!r} has no SCRAM credential")
        else:
            error = None
        results.append(
            p.DescribeUserScramCredentialsResult(
                user=name,
                error_code=0 if error is None else int(error.code),
                error_message=None if error is None else str(error),
                credential_infos=[] if error is not None else by_user[name],
            )
        )
    return p.DescribeUserScramCredentialsResponse(results=results)
