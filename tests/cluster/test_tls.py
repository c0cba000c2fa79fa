"""A TLS cluster: brokers reach each other's listeners over TLS (replica fetches, heartbeats),
checking them against the cluster's CA, and clients produce acks=all over SASL_SSL."""

from __future__ import annotations

from pathlib import Path

import trio
import trustme
from confluent_kafka import Producer

from tests.cluster._harness import open_cluster


async def test_a_tls_cluster_replicates_acks_all_writes(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file, cert_file = tmp_path / "ca.pem", tmp_path / "broker.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    options = {
        "ssl_certfile": cert_file,
        "ssl_cafile": ca_file,
        "sasl_mechanisms": ("SCRAM-SHA-512",),
        "sasl_users": {"admin": "admin-secret"},
    }
    async with open_cluster(tmp_path, password="cluster-secret", broker_options=options) as cluster:
        await cluster.create_topic(
            "r", 1, 3, {"replication.strategy": "isr", "min.insync.replicas": "3"}
        )
        leader = cluster.broker(cluster.leader_of("r", 0))

        def produce() -> int:
            delivered: list[int] = []
            producer = Producer(
                {
                    "bootstrap.servers": f"127.0.0.1:{leader.port}",
                    "security.protocol": "SASL_SSL",
                    "ssl.ca.location": str(ca_file),
                    "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": "admin",
                    "sasl.password": "admin-secret",
                    "acks": "all",
                    "message.timeout.ms": 15000,
                }
            )
            for i in range(100):
                producer.produce(
                    "r", value=b"%d" % i, partition=0,
                    on_delivery=lambda err, msg: err is None and delivered.append(1),
                )  # fmt: skip
            producer.flush(20)
            return len(delivered)

        # min.insync.replicas=3: every write needs both followers' fetches, over TLS.
        assert await trio.to_thread.run_sync(produce) == 100
        for broker in cluster.running():
            replica = broker.partitions[("r", 0)]
            await cluster.wait_for(lambda r=replica: r.log_end_offset == 100, 10, "replicated")
