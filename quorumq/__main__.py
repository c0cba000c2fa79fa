"""``python -m quorumq``: the same as the ``quorumq`` console script."""

from quorumq.cli import main

main()
