"""A broker's listeners (Kafka's ``listeners``, ``advertised.listeners``,
``listener.security.protocol.map`` and ``inter.broker.listener.name``): pure parsing and checks.

Why more than one: brokers usually talk to each other on a private network and to clients on
another, with different security on each, for example PLAINTEXT inside and SASL_SSL outside.
Each listener has a name; a client is told the brokers' addresses on the listener it came in
on, so that it stays on that network.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from quorumq.errors import InvalidConfig

PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL = "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"
SECURITY_PROTOCOLS = (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)


@attrs.frozen
class Listener:
    """One address a broker serves on, with its security protocol.

    ``advertised_host`` / ``advertised_port``: what clients are told to connect to (None: the
    bound host, and the bound port, which may be ephemeral).
    """

    name: str
    host: str
    port: int
    security_protocol: str = PLAINTEXT
    advertised_host: str | None = None
    advertised_port: int | None = None

    @property
    def tls(self) -> bool:
        return self.security_protocol in (SSL, SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self.security_protocol in (SASL_PLAINTEXT, SASL_SSL)


def _split_address(entry: str) -> tuple[str, str, int]:
    """``NAME://host:port`` → (NAME, host, port); an IPv6 host is written in brackets."""
    name, sep, address = entry.strip().partition("://")
    if not sep or not name:
        raise InvalidConfig(f"listener {entry!r} is not NAME://host:port")
    host, colon, port_text = address.rpartition(":")
    if not colon:
        raise InvalidConfig(f"listener {entry!r} has no port")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidConfig(f"listener {entry!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise InvalidConfig(f"listener {entry!r}: port {port} is out of range")
    name = name.upper()
    if not name.replace("_", "").replace("-", "").isalnum():
        raise InvalidConfig(f"listener name {name!r} may hold only letters, digits, _ and -")
    return name, host or "0.0.0.0", port


def _entries(spec: str) -> list[str]:
    return [e for e in (part.strip() for part in spec.split(",")) if e]


def parse_protocol_map(spec: str | None) -> dict[str, str]:
    """``NAME:PROTOCOL,...`` → {NAME: PROTOCOL}.

    Raises:
        InvalidConfig: an entry without a colon, or an unknown protocol.
    """
    found: dict[str, str] = {}
    for entry in _entries(spec or ""):
        name, sep, protocol = entry.partition(":")
        name, protocol = name.strip().upper(), protocol.strip().upper()
        if not sep or not name:
            raise InvalidConfig(f"security protocol map entry {entry!r} is not NAME:PROTOCOL")
        if protocol not in SECURITY_PROTOCOLS:
            raise InvalidConfig(
                f"listener {name}: unknown security protocol {protocol!r} "
                f"(one of {', '.join(SECURITY_PROTOCOLS)})"
            )
        found[name] = protocol
    return found


def parse_listeners(
    spec: str, protocol_map: str | None = None, advertised: str | None = None
) -> tuple[Listener, ...]:
    """Kafka's ``listeners`` (``NAME://host:port,...``), with the security protocol of each from
    ``protocol_map`` (a listener named after a protocol needs no entry) and, optionally, what
    each advertises (``advertised``, the same form; listeners not named keep their own).

    Raises:
        InvalidConfig: malformed entries, a name or port used twice, a listener with no known
            security protocol, or an advertised listener that does not exist.
    """
    protocols = parse_protocol_map(protocol_map)
    listeners: list[Listener] = []
    for entry in _entries(spec):
        name, host, port = _split_address(entry)
        protocol = protocols.get(name, name if name in SECURITY_PROTOCOLS else None)
        if protocol is None:
            raise InvalidConfig(
                f"listener {name} has no security protocol: name it in "
                f"--listener-security-protocol-map (for example {name}:PLAINTEXT)"
            )
        listeners.append(Listener(name, host, port, protocol))
    if not listeners:
        raise InvalidConfig("no listener given")
    names = [x.name for x in listeners]
    if len(set(names)) != len(names):
        raise InvalidConfig(f"a listener name is used twice: {', '.join(names)}")
    ports = [x.port for x in listeners if x.port]
    if len(set(ports)) != len(ports):
        raise InvalidConfig("two listeners cannot bind the same port")
    unknown = set(protocols) - set(names)
    if unknown:
        raise InvalidConfig(f"the protocol map names no listener {', '.join(sorted(unknown))}")
    if advertised:
        by_name = {x.name: x for x in listeners}
        for entry in _entries(advertised):
            name, host, port = _split_address(entry)
            if name not in by_name:
                raise InvalidConfig(f"advertised listener {name} is not a listener")
            by_name[name] = attrs.evolve(
                by_name[name], advertised_host=host, advertised_port=port or None
            )
        listeners = [by_name[x.name] for x in listeners]
    return tuple(listeners)


def inter_broker_listener(listeners: Iterable[Listener], name: str | None) -> Listener:
    """The listener brokers reach each other on: ``name``, or the first.

    Raises:
        InvalidConfig: ``name`` is not a listener.
    """
    listeners = list(listeners)
    if name is None:
        return listeners[0]
    for listener in listeners:
        if listener.name == name.upper():
            return listener
    raise InvalidConfig(
        f"inter-broker listener {name} is not one of {', '.join(x.name for x in listeners)}"
    )
