"""The plugin's fixtures and marker, as a user's ``pytest_plugins`` line would register them."""

from quorumq.testing.pytest_plugin import (  # noqa: F401 - fixtures and the marker hook
    pytest_configure,
    quorumq_cluster,
    quorumq_threaded_cluster,
)
