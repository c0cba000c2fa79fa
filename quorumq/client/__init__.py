"""quorumq's own Trio client: connection, producer (Kafka's partitioner, batching) and consumer."""
