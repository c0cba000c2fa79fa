"""The workload, read-back and checker against one real broker, for every acks setting."""

from __future__ import annotations

from quorumq.bench._kafka import create_topic
from quorumq.chaos import check_history, produce_workload, read_back, wait_leaders_serving
from quorumq.cluster import Supervisor, free_port_block


def test_workload_history_is_clean_on_a_healthy_broker_for_every_acks() -> None:
    with Supervisor(1, base_port=free_port_block(1)) as sup:
        sup.start(timeout_s=60)
        for acks in ("0", "1", "all"):
            topic = f"w-{acks}"
            create_topic(sup.bootstrap, topic, 2, 1)
            wait_leaders_serving(sup.bootstrap, topic, [0, 1])  # acks=0 is dropped before
            result = produce_workload(sup.bootstrap, topic, records=300, acks=acks,
                                      partitions=(0, 1), timeout_s=30, run_id=topic)  # fmt: skip
            assert result.acked == 300
            offsets = [d.offset for d in result.deliveries]
            if acks == "0":
                assert offsets == [None] * 300  # no answer, so no offset
            else:
                assert sorted(o for o in offsets if o is not None) == sorted(list(range(150)) * 2)
            report = check_history(result.attempts(), read_back(sup.bootstrap, topic, [0, 1]))
            assert report.ok and report.summary()["read_back"] == 300, report.summary()
            assert not report.moved and not report.duplicates and not report.unknown
