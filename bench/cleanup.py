"""What a benchmark run leaves on the shared infrastructure, removed when it ends: its databases and
its Kafka topics (each partition keeps files open in the broker, and repeated runs would pile them
up; each database is tables and indexes on disk)."""

from __future__ import annotations

import sys

from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Every topic whose name starts with `prefix` (the run's)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


async def drop_databases(uri: str, prefix: str) -> list[str]:
    """Every database whose name starts with `prefix` (the run's); returns their names."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
    try:
        names = [n for n in await client.list_database_names() if n.startswith(prefix)]
        for name in names:
            await client.drop_database(name)
        return names
    finally:
        await client.close()


async def cleanup(mongodb_uri: str, database_prefix: str, kafka_bootstrap: str, topic_prefix: str) -> None:
    """Both, each whatever happens to the other; a failure is reported, not raised (it must not hide
    the run's own outcome)."""
    try:
        await drop_databases(mongodb_uri, database_prefix)
    except Exception as exc:
        print(f"[bench] could not drop the databases {database_prefix}*: {exc}", file=sys.stderr)
    try:
        await delete_topics(kafka_bootstrap, topic_prefix)
    except Exception as exc:
        print(f"[bench] could not delete the topics {topic_prefix}*: {exc}", file=sys.stderr)
