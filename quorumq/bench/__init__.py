"""Benchmarks that drive a broker with a real Kafka client (librdkafka via confluent-kafka).

The broker under test runs in its own process so its CPU time can be read from the OS
(``psutil``), separately from the client's: the figure that matters for a broker is CPU
seconds per million records, since on a 2-core machine the client needs one core itself.
"""

from quorumq.bench._kafka import (
    CLUSTER_BROKER_ARGS,
    SECURITY_MODES,
    BrokerProcess,
    ConsumeResult,
    ElectionTrial,
    FailoverTrial,
    ProduceResult,
    RunSummary,
    agreed_controller,
    consume_bench,
    elections_bench,
    failover_bench,
    produce_bench,
    start_quorumq_broker,
    start_quorumq_cluster,
    start_secured_quorumq_broker,
    start_secured_quorumq_cluster,
    start_tansu_broker,
    summarize_runs,
)

__all__ = [
    "CLUSTER_BROKER_ARGS",
    "SECURITY_MODES",
    "BrokerProcess",
    "ConsumeResult",
    "ElectionTrial",
    "FailoverTrial",
    "ProduceResult",
    "RunSummary",
    "agreed_controller",
    "consume_bench",
    "elections_bench",
    "failover_bench",
    "produce_bench",
    "start_quorumq_broker",
    "start_quorumq_cluster",
    "start_secured_quorumq_broker",
    "start_secured_quorumq_cluster",
    "start_tansu_broker",
    "summarize_runs",
]
