"""quorumq: a replicated, Kafka-compatible partition log in Python."""

__version__ = "0.1.0"
