"""The shared async client's transport (aiohttp) against hostile servers scripted on loopback.

Each case of issue 14 has its test: malformed framing refused, hang-ups and refused connections
mapped to the client's typed errors, a trickled answer timed out as a whole, a compression bomb
stopped at the body cap, Happy Eyeballs past a black-holed address, a dead keep-alive connection
never resent by the transport (the retry policy resends a GET, or a POST with an ``Idempotency-Key``,
each within the request budget; a POST without one reaches the server once), and a stale extra answer
never read as the next request's. The sync client sends
through httpx's own transport (``test_send_path.py``).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from airflow_provider_coverbase.client import AiohttpTransport, AsyncCoverbaseClient, CoverbaseClient, RetryPolicy
from airflow_provider_coverbase.client._budget import PACING_HEADROOM, RequestBudget
from airflow_provider_coverbase.client._http import read_whole
from airflow_provider_coverbase.exceptions import CoverbaseConnectionError, CoverbaseTimeoutError
from tests.client.scripted import Record, answer, read_request, run_body, scripted
from tests.fake_api import API_KEY
from tests.ports import free_port

NO_RETRY = RetryPolicy(max_attempts=1)


def client(base_url: str, **kwargs: Any) -> AsyncCoverbaseClient:
    kwargs.setdefault("retry", NO_RETRY)
    return AsyncCoverbaseClient(API_KEY, base_url=base_url, allow_insecure_http=True, **kwargs)


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    made = AiohttpTransport(max_connections=4)
    yield made
    await made.aclose()


async def get(transport: AiohttpTransport, url: str, **kwargs: Any) -> httpx.Response:
    request = httpx.Request("GET", url, **kwargs)
    request.extensions = {"timeout": {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}}
    return await transport.handle_async_request(request)


def replying(*answers: bytes) -> Any:
    """A script that reads one request and writes ``answers`` (each a separate write), then waits for EOF."""

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        await read_request(reader, record)
        for data in answers:
            writer.write(data)
            await writer.drain()
        await reader.read()

    return script


# ---- framing -------------------------------------------------------------------------------------

MALFORMED = {
    "chunk size 0x2": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
    "chunk size +2": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\n{}\r\n0\r\n\r\n",
    "chunk size 1_0": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n",
    "duplicate transfer-encoding": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "chunked then gzip": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "chunked, identity": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "header name with a space": b"HTTP/1.1 200 OK\r\nContent Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    "NUL byte in a value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    "conflicting lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
    "a 101 as the final answer": b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 2\r\n\r\n{}",
    "not HTTP at all": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
}


@pytest.mark.parametrize("reply", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_framing_is_a_protocol_error(transport: AiohttpTransport, reply: bytes) -> None:
    async with scripted(replying(reply)) as (url, _):
        with pytest.raises(httpx.RemoteProtocolError):
            await get(transport, url + "/v1/utils/authtest")


async def test_a_malformed_answer_reads_as_a_connection_error_in_the_client() -> None:
    async with scripted(replying(MALFORMED["chunk size 0x2"])) as (url, _), client(url) as api:
        with pytest.raises(CoverbaseConnectionError, match="RemoteProtocolError on GET /v1/utils/authtest"):
            await api.check_auth()


async def test_a_well_formed_chunked_answer_is_read(transport: AiohttpTransport) -> None:
    reply = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n'
    async with scripted(replying(reply)) as (url, _):
        response = await get(transport, url + "/x")
    assert response.json() == {"a": 1}


# ---- hang-ups and refusals -----------------------------------------------------------------------


async def test_a_hang_up_before_the_answer_is_a_connection_error() -> None:
    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        await read_request(reader, record)  # then close without a word

    async with scripted(script) as (url, _), client(url) as api:
        with pytest.raises(CoverbaseConnectionError) as caught:
            await api.check_auth()
    assert not isinstance(caught.value, CoverbaseTimeoutError)
    assert "RemoteProtocolError" in str(caught.value)


async def test_a_body_cut_short_is_a_connection_error() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}"

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        await read_request(reader, record)
        writer.write(cut)
        await writer.drain()

    async with scripted(script) as (url, _), client(url) as api:
        with pytest.raises(CoverbaseConnectionError) as caught:
            await api.check_auth()
    assert not isinstance(caught.value, CoverbaseTimeoutError)


async def test_a_refused_connection_is_a_connect_error_not_a_timeout(transport: AiohttpTransport) -> None:
    with pytest.raises(httpx.ConnectError):
        await get(transport, f"http://127.0.0.1:{free_port()}/x")
    async with client(f"http://127.0.0.1:{free_port()}") as api:
        with pytest.raises(CoverbaseConnectionError, match="ConnectError on GET") as caught:
            await api.check_auth()
    assert not isinstance(caught.value, CoverbaseTimeoutError)


async def test_an_unsupported_scheme(transport: AiohttpTransport) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await get(transport, "ftp://127.0.0.1/x")


# ---- timeouts ------------------------------------------------------------------------------------


async def test_a_trickled_answer_times_out_as_a_whole() -> None:
    """One byte every 50 ms never trips the per-read timeout (0.3 s); the whole answer's does."""
    body = b"{" + b" " * 400 + b"}"
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        await read_request(reader, record)
        for byte in reply:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    async with scripted(script) as (url, _), client(url, timeout=0.3, connect_timeout=0.3) as api:
        with pytest.raises(CoverbaseTimeoutError, match="ReadTimeout on GET"):
            await api.check_auth()


async def test_a_silent_server_is_a_read_timeout() -> None:
    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        await read_request(reader, record)
        await reader.read()

    async with scripted(script) as (url, record), client(url, timeout=0.2, connect_timeout=0.2) as api:
        with pytest.raises(CoverbaseTimeoutError, match="ReadTimeout"):
            await api.check_auth()
    assert record.methods() == ["GET"]


# ---- bodies --------------------------------------------------------------------------------------


def bomb(encoding: str, decoded_mib: int) -> bytes:
    """``decoded_mib`` MiB of zeros, compressed (about 1/1000 of that on the wire)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    block = bytes(1024 * 1024)
    return b"".join(compressor.compress(block) for _ in range(decoded_mib)) + compressor.flush()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compression_bomb_stops_at_the_body_cap(encoding: str) -> None:
    """64 MiB decoded from about 64 KB: the read stops at the 1 MiB cap, memory stays near it."""
    data = bomb(encoding, 64)
    reply = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        encoding.encode(),
        len(data),
        data,
    )
    bounded = AiohttpTransport(max_body_bytes=1024 * 1024)
    async with scripted(replying(reply)) as (url, _):
        tracemalloc.start()
        try:
            with pytest.raises(httpx.RemoteProtocolError, match="larger than 1048576 bytes"):
                await get(bounded, url + "/x")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await bounded.aclose()
    assert peak < 16 * 1024 * 1024  # far below the 64 MiB the bomb decodes to


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_answer_is_decoded_once(transport: AiohttpTransport, encoding: str) -> None:
    data = gzip.compress(b'{"ok": true}') if encoding == "gzip" else zlib.compress(b'{"ok": true}')
    reply = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        encoding.encode(),
        len(data),
        data,
    )
    async with scripted(replying(reply)) as (url, _):
        response = await get(transport, url + "/x")
    assert response.json() == {"ok": True}
    assert "content-encoding" not in response.headers  # decoded here: httpx must not decode again
    assert response.headers.get("content-length") in (None, str(len(b'{"ok": true}')))  # not the wire's length


def test_the_sync_reading_hands_on_a_decoded_answer_without_its_wire_headers() -> None:
    data = gzip.compress(b'{"ok": true}')
    wire = httpx.Response(
        200,
        headers={"Content-Encoding": "gzip", "Content-Length": str(len(data))},
        content=data,
        request=httpx.Request("GET", "http://coverbase.test/v1/utils/authtest"),
    )
    response = read_whole(wire)
    assert response.json() == {"ok": True}
    assert "content-encoding" not in response.headers
    assert response.headers.get("content-length") in (None, str(len(b'{"ok": true}')))


async def test_a_body_over_the_cap_is_refused_by_its_length() -> None:
    bounded = AiohttpTransport(max_body_bytes=1000)
    async with scripted(replying(answer(raw=b"x" * 5000))) as (url, _):
        with pytest.raises(httpx.RemoteProtocolError, match="larger than 1000 bytes"):
            await get(bounded, url + "/x")
    await bounded.aclose()


# ---- connections ---------------------------------------------------------------------------------


class TwoAddresses(AbstractResolver):
    """Resolves any name to two loopback addresses: a black hole first, then a listening server."""

    def __init__(self, black_hole: int, good: int) -> None:
        self.ports = (black_hole, good)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host="127.0.0.1", port=p, family=socket.AF_INET, proto=0, flags=0)
            for p in self.ports
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback port whose SYNs go unanswered: a listener that never accepts, its queue full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue: later connection attempts hang instead of completing
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


async def test_happy_eyeballs_gets_past_a_black_holed_first_address(black_hole: int) -> None:
    """Without staggered attempts the black-holed first address would use the whole connect timeout."""
    probe = socket.socket()
    probe.setblocking(False)
    probe.connect_ex(("127.0.0.1", black_hole))
    await asyncio.sleep(0.3)
    hangs = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and not _connected(probe)
    probe.close()
    if not hangs:
        pytest.skip("this kernel completes connections to a full accept queue: no black hole on loopback")
    async with scripted(replying(answer(body={"msg": "Auth successful"}))) as (url, _):
        good = int(url.rsplit(":", 1)[1])
        transport = AiohttpTransport(resolver=TwoAddresses(black_hole, good))
        async with client("http://coverbase.test", transport=transport, connect_timeout=3.0) as api:
            assert await api.check_auth() == "Auth successful"


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def keep_alive_then_hang_up(reply: bytes) -> Any:
    """Connection 0 answers its first request, then reads the second and closes without answering;
    later connections answer every request."""

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        while True:
            head, _ = await read_request(reader, record)
            if not head:
                return
            if number == 0 and len(record.heads) > 1:
                return  # the request reached the server; the connection dies before any answer byte
            writer.write(reply)
            await writer.drain()

    return script


async def test_a_dead_keep_alive_connection_is_not_resent_by_the_transport(transport: AiohttpTransport) -> None:
    """aiohttp alone would resend the GET at once, outside the retry policy and the budget."""
    async with scripted(keep_alive_then_hang_up(answer(body={"msg": "ok"}))) as (url, record):
        assert (await get(transport, url + "/a")).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected"):
            await get(transport, url + "/b")
    assert record.methods() == ["GET", "GET"]
    assert record.connections == 1


async def test_a_get_on_a_dead_keep_alive_connection_is_resent_by_the_policy_within_the_budget() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async with scripted(keep_alive_then_hang_up(answer(body=run_body("cbwr_1", "running")))) as (url, record):
        retry = RetryPolicy(max_attempts=3, initial_delay=0.5, jitter=0.0)
        budget = RequestBudget(1.0, clock=lambda: 0.0)  # a stopped clock: each request waits one slot more
        async with client(url, retry=retry, sleep=sleep, rng=lambda: 0.0, budget=budget) as api:
            await api.get_workflow_run("cbwr_1")  # opens the connection that dies under the next request
            run = await api.get_workflow_run("cbwr_1")
    assert run.workflow_run_id == "cbwr_1"
    assert record.methods() == ["GET", "GET", "GET"]  # the second read twice: the dead connection, then a new one
    assert record.connections == 2
    slot = 1.0 + PACING_HEADROOM
    # The second read's slot, the policy's backoff, then the resend's own slot in the budget.
    assert pauses == pytest.approx([slot, 0.5, 2 * slot])


async def test_a_post_without_an_idempotency_key_reaches_the_server_once(transport: AiohttpTransport) -> None:
    async with scripted(keep_alive_then_hang_up(answer(body={"msg": "ok"}))) as (url, record):
        assert (await get(transport, url + "/a")).status_code == 200
        request = httpx.Request("POST", url + "/v1/workflows/w/run", json={"input": {}})
        request.extensions = {"timeout": {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}}
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(request)
    assert record.methods() == ["GET", "POST"]


async def test_a_post_with_an_idempotency_key_is_resent_by_the_retry_policy() -> None:
    """The run-starting POST carries a key; its resend goes through the policy (a pause, the budget)."""
    started = answer(201, run_body("cbwr_1", "queued") | {"input": {}})
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async with scripted(keep_alive_then_hang_up(started)) as (url, record):
        retry = RetryPolicy(max_attempts=3, initial_delay=0.5, jitter=0.0)
        async with client(url, retry=retry, sleep=sleep, rng=lambda: 0.0, max_requests_per_second=0) as api:
            await api.check_auth()  # opens the connection the POST reuses
            run = await api.run_workflow("adhoc-campaign", {})
    assert run.workflow_run_id == "cbwr_1"
    assert record.methods() == ["GET", "POST", "POST"]
    keys = [line for head in record.heads[1:] for line in head.split("\r\n") if line.lower().startswith("idempotency")]
    assert len(keys) == 2 and keys[0] == keys[1]  # the same key: the server can tell it is one start
    assert pauses == [0.5]  # the policy's backoff: the resend was the client's, not the transport's


async def test_a_stale_extra_answer_is_never_read_as_the_next_one() -> None:
    """The server sends an extra answer about another run after the first one, while the connection is
    idle; the next poll (of another run) must not take it for its own answer."""

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        while True:
            head, _ = await read_request(reader, record)
            if not head:
                return
            run_id = head.split(" ", 2)[1].rsplit("/", 1)[1]
            writer.write(answer(body=run_body(run_id)))
            await writer.drain()
            if len(record.heads) == 1:
                await asyncio.sleep(0.1)
                writer.write(answer(body=run_body("cbwr_stale", "completed")))
                await writer.drain()

    async with scripted(script) as (url, _):
        retry = RetryPolicy(max_attempts=3, initial_delay=0.0, jitter=0.0)
        async with client(url, retry=retry) as api:
            first = await api.get_workflow_run("cbwr_1")
            await asyncio.sleep(0.3)  # the extra answer arrives while the connection is idle
            second = await api.get_workflow_run("cbwr_2")
    assert (first.workflow_run_id, first.status) == ("cbwr_1", "running")
    assert (second.workflow_run_id, second.status) == ("cbwr_2", "running")


async def test_bytes_right_after_an_answer_retire_its_connection(transport: AiohttpTransport) -> None:
    async with scripted(replying(answer(body={"n": 1}) + answer(body={"n": 99}))) as (url, record):
        assert (await get(transport, url + "/a")).json() == {"n": 1}
        second = await get(transport, url + "/b")
    assert second.json() == {"n": 1}  # from a new connection, not the 99 left on the first
    assert record.connections == 2


async def test_the_connection_is_kept_alive_between_requests(transport: AiohttpTransport) -> None:
    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        while (await read_request(reader, record))[0]:
            writer.write(answer(body={"ok": True}))
            await writer.drain()

    async with scripted(script) as (url, record):
        for _ in range(5):
            assert (await get(transport, url + "/x")).json() == {"ok": True}
    assert record.connections == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_both_clients_stop_a_compression_bomb_at_the_cap(kind: str) -> None:
    """The sync client reads through httpx's transport, whose decoders have no cap: it caps the read itself."""
    data = bomb("gzip", 64)  # 64 MiB decoded, beyond the 16 MiB cap
    reply = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
    async with scripted(replying(reply)) as (url, _):
        if kind == "sync":
            sync_api = CoverbaseClient(API_KEY, base_url=url, allow_insecure_http=True, retry=NO_RETRY)
            with sync_api, pytest.raises(CoverbaseConnectionError, match="larger than 16777216 bytes"):
                await asyncio.to_thread(sync_api.check_auth)
        else:
            async with client(url) as api:
                with pytest.raises(CoverbaseConnectionError, match="larger than 16777216 bytes"):
                    await api.check_auth()
