"""Test helpers for quorumq users: a real in-process cluster, no Docker, no JVM.

- :class:`Cluster`: ``async with Cluster(brokers=3) as cluster:`` starts brokers on free
  127.0.0.1 ports in a temporary directory; ``cluster.bootstrap``, ``wait_ready()``,
  ``create_topic()``, ``kill_broker(i)`` / ``restart_broker(i)`` for failover tests.
- :class:`ThreadedCluster`: the same in a background thread, for blocking clients
  (``with ThreadedCluster() as cluster: KafkaProducer(bootstrap_servers=cluster.bootstrap)``).
- :class:`SimNetwork`, :class:`SimController`, :func:`sim_cluster`: a whole cluster of real
  broker shells on an in-memory network under ``trio.testing.MockClock`` (``docs/simulation.md``).
- :func:`free_ports`: loopback ports free right now, for tests that start their own servers.
- ``quorumq.testing.pytest_plugin``: the ``quorumq_cluster`` and ``quorumq_threaded_cluster``
  fixtures (``pytest_plugins = ["quorumq.testing.pytest_plugin"]``).

See ``docs/testing.md``.
"""

from quorumq.testing._cluster import TESTING_BROKER_DEFAULTS, Cluster, ThreadedCluster, free_ports
from quorumq.testing._sim import SimController, SimNetwork, sim_cluster

__all__ = [
    "TESTING_BROKER_DEFAULTS",
    "Cluster",
    "SimController",
    "SimNetwork",
    "ThreadedCluster",
    "free_ports",
    "sim_cluster",
]
