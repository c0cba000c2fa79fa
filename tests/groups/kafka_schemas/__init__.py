"""Kafka's ``__consumer_offsets`` record schemas (group-coordinator/src/main/resources/common/
message), typed in from the spec so kafka-python's generic schema codec can serve as an
independent encoder to compare our bytes with."""
