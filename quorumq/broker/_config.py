"""The broker's own settings (Kafka's ``server.properties`` names, where Kafka has one)."""

from __future__ import annotations

from pathlib import Path

import attrs

from quorumq.broker._listeners import (
    PLAINTEXT,
    SASL_PLAINTEXT,
    SASL_SSL,
    SSL,
    Listener,
    inter_broker_listener,
)


@attrs.frozen
class BrokerConfig:
    """What one broker needs to start.

    ``port=0`` binds an ephemeral port; :meth:`quorumq.broker.Broker.serve` reports the bound one.
    """

    data_dir: Path = attrs.field(converter=Path)
    node_id: int = 0
    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None
    socket_request_max_bytes: int = 100 * 1024 * 1024
    """``socket.request.max.bytes``: a larger frame closes the connection."""
    auto_create_topics_enable: bool = True
    """``auto.create.topics.enable``: Metadata for an unknown topic creates it."""
    num_partitions: int = 1
    """``num.partitions``: partitions of an auto-created topic (and CreateTopics with -1)."""
    queued_max_requests: int = 32
    """Per-connection pipeline depth: requests read ahead of their responses."""
    produce_timeout_ms_cap: int = 30_000
    """Longest a produce with acks=all waits for the high watermark, whatever it asks."""
    log_retention_check_interval_ms: int = 300_000
    """``log.retention.check.interval.ms``: how often retention and compaction run."""
    offsets_topic_num_partitions: int = 50
    """``offsets.topic.num.partitions``: partitions of ``__consumer_offsets`` when created."""
    group_initial_rebalance_delay_ms: int = 3_000
    """``group.initial.rebalance.delay.ms``: a new group waits this long for more members."""
    group_min_session_timeout_ms: int = 6_000
    """``group.min.session.timeout.ms``: shorter session timeouts are refused."""
    ssl_certfile: Path | None = None
    """PEM certificate (chain) of the listener: with it the listener speaks TLS (Kafka's SSL,
    or SASL_SSL with ``sasl_mechanisms``)."""
    ssl_keyfile: Path | None = None
    """PEM private key of ``ssl_certfile`` (None: the key is in the certificate file)."""
    ssl_cafile: Path | None = None
    """PEM CA certificates: the ones client certificates must chain to (with
    ``ssl_client_auth``), and that a cluster's brokers check each other's listeners against."""
    ssl_client_auth: bool = False
    """``ssl.client.auth=required``: a client must present a certificate signed by
    ``ssl_cafile``; without SASL, its subject becomes the principal (``User:CN=...``)."""
    sasl_mechanisms: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """``sasl.enabled.mechanisms`` of the listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512). Empty:
    a PLAINTEXT listener; otherwise SASL_PLAINTEXT, where every connection must log in first."""
    sasl_users: dict[str, str] = attrs.field(factory=dict, converter=dict, repr=False)
    """Users defined in the broker's own config, name → password (Kafka's PLAIN JAAS
    ``user_<name>="<password>"``): the first admin of a SASL cluster, before any user exists
    in the metadata log. Valid for every mechanism."""
    connections_max_reauth_ms: int = 0
    """``connections.max.reauth.ms`` (KIP-368): a SASL login lasts this long; the client must
    log in again on the same connection before then, or the connection is closed at its next
    request. 0: a login lasts as long as its connection."""
    authorizer: bool = False
    """Check every request against the ACLs (Kafka's ``authorizer.class.name``); without it
    every client may do everything, as in Kafka."""
    super_users: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """``super.users``: principals (``User:<name>``) the ACLs do not apply to."""
    allow_everyone_if_no_acl_found: bool = False
    """``allow.everyone.if.no.acl.found``: a resource with no ACL at all is open to everyone."""
    quota_window_num: int = 11
    """``quota.window.num``: samples a client's byte rate is measured over."""
    quota_window_size_seconds: float = 1.0
    """``quota.window.size.seconds``: one sample's length (tests shorten both)."""
    listeners: tuple[Listener, ...] = attrs.field(default=(), converter=tuple)
    """``listeners``: every address the broker serves on, each with its security protocol
    (``_listeners.py``). Empty: one listener on ``host:port``, its protocol from the TLS and
    SASL settings. Given: ``host``, ``port`` and ``advertised_host`` are not used."""
    inter_broker_listener_name: str | None = None
    """``inter.broker.listener.name``: the listener brokers reach each other on (None: the
    first)."""

    @property
    def advertised(self) -> str:
        return self.advertised_host or self.host

    def effective_listeners(self) -> tuple[Listener, ...]:
        """``listeners``, or the one listener the single-listener settings describe."""
        if self.listeners:
            return self.listeners
        if self.sasl_mechanisms:
            protocol = SASL_SSL if self.ssl_certfile is not None else SASL_PLAINTEXT
        else:
            protocol = SSL if self.ssl_certfile is not None else PLAINTEXT
        return (Listener(protocol, self.host, self.port, protocol, self.advertised_host),)

    def inter_broker_listener(self) -> Listener:
        """The listener brokers reach each other on.

        Raises:
            InvalidConfig: ``inter_broker_listener_name`` names no listener.
        """
        return inter_broker_listener(self.effective_listeners(), self.inter_broker_listener_name)
