"""The store-room check counts what JetStream already stores, on a real server."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx

from pytest_stackcheck.chaos.jetstream import store_space

STREAM_BYTES = 1024 * 1024


async def _store_one_mebibyte(url: str) -> None:
    import nats

    client = await nats.connect(url, max_reconnect_attempts=0)
    try:
        jetstream = client.jetstream()
        await jetstream.add_stream(name="SPACE", subjects=["space.test"])
        for _ in range(16):
            await jetstream.publish("space.test", b"x" * (STREAM_BYTES // 16))
    finally:
        await client.close()


def test_stored_bytes_count_as_room(nats_server):
    asyncio.run(_store_one_mebibyte(nats_server.url))
    varz = httpx.get(f"http://127.0.0.1:{nats_server.monitor_port}/varz").json()

    space = store_space(varz)

    assert space is not None
    assert space.used_bytes >= STREAM_BYTES
    room = space.free_bytes + space.used_bytes
    assert replace(space, max_file_store=room).ok
    assert "bytes stored" in replace(space, max_file_store=room).describe()
    assert not replace(space, max_file_store=room + 1).ok
    assert (
        replace(space, max_file_store=room + 1)
        .describe()
        .endswith(
            "lower max_file_store below the free space plus what is stored, or give "
            "the store a larger filesystem"
        )
    )
