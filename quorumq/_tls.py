"""TLS contexts for the broker's listener and for connections to a TLS listener (Kafka's SSL
and SASL_SSL security protocols), from PEM files, with the standard library's ``ssl``."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from quorumq.errors import InvalidConfig


def server_context(
    certfile: Path,
    keyfile: Path | None = None,
    cafile: Path | None = None,
    *,
    client_auth: bool = False,
) -> ssl.SSLContext:
    """The listener's context: TLS 1.2 or newer; with ``client_auth`` every client must present
    a certificate that chains to ``cafile``.

    Raises:
        InvalidConfig: a file that is missing or not a PEM certificate or key (one line).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
        if cafile is not None:
            context.load_verify_locations(cafile=str(cafile))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidConfig(f"cannot load the TLS certificate or key: {exc}") from None
    if client_auth:
        if cafile is None:
            raise InvalidConfig(
                "client authentication needs the CA file client certificates chain to"
            )
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    cafile: Path | None = None, certfile: Path | None = None, keyfile: Path | None = None
) -> ssl.SSLContext:
    """A context that checks the broker's certificate against ``cafile`` (the system's CAs when
    None), and presents ``certfile`` to a listener that asks for a client certificate.

    Raises:
        InvalidConfig: a file that is missing or not PEM.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if cafile is not None:
            context.load_verify_locations(cafile=str(cafile))
        if certfile is not None:
            context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidConfig(f"cannot load the TLS CA, certificate or key: {exc}") from None
    return context


def subject_principal(peer_cert: dict[str, Any] | None) -> str | None:
    """The distinguished name of a verified client certificate, most specific part first, as
    Kafka's default SSL principal builder writes it (RFC 2253: ``CN=alice,OU=eng,O=Example``).
    None when there is no certificate."""
    if not peer_cert or "subject" not in peer_cert:
        return None
    names = {
        "commonName": "CN",
        "organizationalUnitName": "OU",
        "organizationName": "O",
        "localityName": "L",
        "stateOrProvinceName": "ST",
        "countryName": "C",
        "domainComponent": "DC",
        "userId": "UID",
    }
    parts = []
    for rdn in reversed(peer_cert["subject"]):
        parts.append("+".join(f"{names.get(key, key)}={value}" for key, value in rdn))
    return ",".join(parts) or None
