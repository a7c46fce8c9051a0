"""aiokafka (asyncio) against Fjord, manual partition assignment (no group)."""

from __future__ import annotations

import asyncio

import pytest

aiokafka = pytest.importorskip("aiokafka")
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.codec import has_gzip, has_lz4, has_snappy, has_zstd  # noqa: E402

from helpers import create_topic, unique_topic  # noqa: E402

BASE_TS = 1_700_000_200_000
AVAILABLE = {"none": True, "gzip": has_gzip(), "lz4": has_lz4(), "snappy": has_snappy(), "zstd": has_zstd()}


async def _roundtrip(bootstrap, topic, codec, n=40):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                compression_type=None if codec == "none" else codec,
                                linger_ms=10, request_timeout_ms=15000)
    await producer.start()
    try:
        futs = []
        for i in range(n):
            futs.append(await producer.send(
                topic, key=f"k{i}".encode(), value=f"{codec}-{i}-".encode() * (i % 5 + 1), partition=0,
                headers=[("i", str(i).encode())], timestamp_ms=BASE_TS + i))
        metas = await asyncio.gather(*futs)
        assert [m.offset for m in metas] == list(range(n))
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=15000,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(got) < n and loop.time() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            got.extend(batch.get(tp, []))
        assert len(got) == n, f"consumed {len(got)} of {n}"
        assert [m.offset for m in got] == list(range(n))
        assert [m.key for m in got] == [f"k{i}".encode() for i in range(n)]
        assert [m.value for m in got] == [f"{codec}-{i}-".encode() * (i % 5 + 1) for i in range(n)]
        assert [m.timestamp for m in got] == [BASE_TS + i for i in range(n)]
        assert [list(m.headers) for m in got] == [[("i", str(i).encode())] for i in range(n)]
        end = await consumer.end_offsets([tp])
        assert end == {tp: n}
        found = await consumer.offsets_for_times({tp: BASE_TS + 7})
        assert found[tp].offset == 7
    finally:
        await consumer.stop()


@pytest.mark.parametrize("codec", ["none", "gzip", "lz4", "snappy", "zstd"])
def test_aiokafka_produce_consume(broker, codec):
    if not AVAILABLE[codec]:
        pytest.skip(f"{codec} library not installed for aiokafka")
    t = unique_topic(f"aio-{codec}")
    create_topic(broker, t, partitions=1)
    asyncio.run(asyncio.wait_for(_roundtrip(broker.bootstrap, t, codec), timeout=60))
