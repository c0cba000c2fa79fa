"""Users, ACLs and a quota on a broker that requires a login: what each user may do.

    uv run quorumq broker --data-dir /tmp/qsec --sasl-mechanism SCRAM-SHA-512 \\
        --sasl-user admin=admin-secret --authorizer --super-user User:admin
    uv run python examples/secure.py --bootstrap 127.0.0.1:9092 --admin-password admin-secret

Logged in as the admin (a super user), the script creates two SCRAM users, a topic, and ACLs:
the writer may write the topic, the reader may read it with the groups named ``<run>-``.
Then it writes as the writer, is refused a write as the reader (TOPIC_AUTHORIZATION_FAILED),
and reads back as the reader in a consumer group. Passwords travel as SCRAM proofs, never as
text.
"""

from __future__ import annotations

import argparse
import secrets
import sys

import trio

from quorumq import protocol as p
from quorumq.client import Consumer, Producer, SaslConfig, open_connection
from quorumq.errors import QuorumqError, TopicAuthorizationFailed, error_for_code
from quorumq.security import (
    SCRAM_MECHANISMS,
    SCRAM_SHA_512,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
    salted_password,
)


def _check(code: int, what: str) -> None:
    if code:
        raise error_for_code(code)(what)


async def admin_setup(bootstrap: str, admin: SaslConfig, run: str, users: dict[str, str]) -> str:
    """Users, topic and ACLs, as the admin; returns the topic's name."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    topic = f"{run}-payments"
    async with open_connection(host, int(port), client_id="example-admin", sasl=admin) as conn:
        upsertions = []
        for name, password in users.items():
            salt = secrets.token_bytes(16)
            upsertions.append(
                p.ScramCredentialUpsertion(
                    name=name,
                    mechanism=SCRAM_MECHANISMS[SCRAM_SHA_512][0],
                    iterations=8192,
                    salt=salt,
                    salted_password=salted_password(SCRAM_SHA_512, password, salt, 8192),
                )
            )
        answer = await conn.request(
            p.ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
            0,
            p.AlterUserScramCredentialsRequest(upsertions=upsertions),
        )
        for result in answer.results:
            _check(result.error_code, f"user {result.user}")
        print(f"created users {', '.join(users)}")
        created = await conn.request(
            p.ApiKey.CREATE_TOPICS,
            conn.version_for(p.ApiKey.CREATE_TOPICS, (0, 4)),
            p.CreateTopicsRequest(
                topics=[p.CreatableTopic(name=topic, num_partitions=1, replication_factor=1)],
                timeout_ms=30_000,
            ),
        )
        _check(created.topics[0].error_code, f"topic {topic}")
        writer, reader = (f"User:{name}" for name in users)
        acls = [
            (ResourceType.TOPIC, topic, PatternType.LITERAL, writer, AclOperation.WRITE),
            (ResourceType.TOPIC, topic, PatternType.LITERAL, reader, AclOperation.READ),
            (ResourceType.GROUP, f"{run}-", PatternType.PREFIXED, reader, AclOperation.READ),
        ]
        answer = await conn.request(
            p.ApiKey.CREATE_ACLS,
            conn.version_for(p.ApiKey.CREATE_ACLS, (1, 3)),
            p.CreateAclsRequest(
                creations=[
                    p.AclCreation(
                        resource_type=int(rtype),
                        resource_name=name,
                        resource_pattern_type=int(pattern),
                        principal=principal,
                        host="*",
                        operation=int(op),
                        permission_type=int(AclPermission.ALLOW),
                    )
                    for rtype, name, pattern, principal, op in acls
                ]
            ),
        )
        for result in answer.results:
            _check(result.error_code, "an ACL")
        for rtype, name, pattern, principal, op in acls:
            print(f"allowed {principal} {op.name} on {rtype.name} {pattern.name} {name}")
    return topic


async def main(args: argparse.Namespace) -> int:
    run = f"example-{secrets.token_hex(3)}"
    users = {f"{run}-writer": secrets.token_urlsafe(12), f"{run}-reader": secrets.token_urlsafe(12)}
    admin = SaslConfig(SCRAM_SHA_512, args.admin_user, args.admin_password)
    topic = await admin_setup(args.bootstrap, admin, run, users)
    writer, reader = (SaslConfig(SCRAM_SHA_512, name, pw) for name, pw in users.items())

    async with Producer(args.bootstrap, acks="all", sasl=writer) as producer:
        for i in range(args.count):
            await producer.send(topic, f"payment-{i}".encode())
    print(f"{writer.username} wrote {args.count} records to {topic}")

    async with Producer(args.bootstrap, acks="all", retries=0, sasl=reader) as producer:
        try:
            await producer.send(topic, b"not allowed")
            print(f"{reader.username} wrote to {topic}: the ACLs did not hold")
            return 1
        except TopicAuthorizationFailed as exc:
            print(f"{reader.username} may not write to {topic}: {type(exc).__name__}")

    received = 0
    group = f"{run}-auditors"
    async with Consumer(
        args.bootstrap, group_id=group, auto_offset_reset="earliest", sasl=reader
    ) as consumer:
        consumer.subscribe([topic])
        with trio.move_on_after(args.timeout):
            while received < args.count:
                batches = await consumer.getmany(timeout_ms=500)
                received += sum(len(records) for records in batches.values())
    print(f"{reader.username} read {received} records from {topic} as group {group}")
    return 0 if received == args.count else 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--admin-user", default="admin")
    parser.add_argument("--admin-password", required=True)
    parser.add_argument("--count", type=int, default=5, help="records to write and read")
    parser.add_argument("--timeout", type=float, default=30.0, help="stop reading after this")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        sys.exit(trio.run(main, parse_args()))
    except* (ConnectionError, QuorumqError) as group:
        sys.exit(f"error: {group.exceptions[0]}")
