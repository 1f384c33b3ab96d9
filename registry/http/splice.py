"""Proxied S3 blob bodies to the client with splice(2): no byte passes through Python.

Proxying a pull through aiohttp copies every byte from the kernel into a bytes object
and back into the kernel, with the interpreter in between: 0.6–0.8× distribution
proxying (docs/benchmarks.md). Here the store's answer comes on a connection of its
own (`SocketBody`: headers parsed, the body still on the socket); once the client's
response headers are on the wire, a thread sends the body bytes that came with the
store's headers, then moves the rest store socket → pipe → client socket with splice(2),
polling both sockets. The thread owns the store's connection and a dup of the client's
descriptor, and closes both: a connection the event loop closes meanwhile can never hand
its descriptor number to another client's socket under the thread.

A body that ends short (the store's object is shorter than its row, the store broke the
connection or stayed silent for `storage.idle_timeout`) aborts the client connection, so
it never looks complete; a client that hangs up or takes nothing for `http.idle_timeout`
ends the thread, and so does the request's end (`stop`, checked at least once a second).
Nothing here reads the bytes: like the streamed path it replaces, a GET passes stored
bytes on unverified (their digest was verified when they were stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import threading

from aiohttp import web

from registry.http.sendfile import STALL_SECONDS, headers_sent, raw_socket
from registry.logs import get_logger
from registry.oci.consumers import ProcessThreadPool
from registry.storage.base import SocketBody

log = get_logger("zoll.http")

AVAILABLE = hasattr(os, "splice")
MIN_SIZE = 1 << 20
"""Smaller bodies take the pooled connection (`read`): a fresh connection to the store
costs more than copying them."""
PIPE_SIZE = 1 << 20
_RELAYS = ProcessThreadPool(64, "splice")


class RelayCount:
    """Relays begun and still running in this process (tests see threads end)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = 0
        self.running = 0


COUNT = RelayCount()
_IN = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_MORE = getattr(os, "SPLICE_F_MORE", 0)


def usable(request: web.BaseRequest) -> bool:
    """Whether splice(2) may write to the client's connection (a plain socket, not TLS,
    which would need the bytes encrypted in Python)."""
    return AVAILABLE and raw_socket(request)


def _pipe() -> tuple[int, int, int]:
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    with contextlib.suppress(OSError):  # above pipe-max-size: the default 64 KiB works too
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return r, w, fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)


def relay(
    client: int,
    upstream: int,
    head: bytes,
    remaining: int,
    stop: threading.Event,
    idle: float,
    client_idle: float = STALL_SECONDS,
) -> int:
    """Send `head`, then up to `remaining` bytes from `upstream`, to `client` (both
    non-blocking sockets); return how many bytes the client took. Fewer: the store's body
    ended or broke, the store was silent for `idle` seconds, or `stop` was set. Raises
    ConnectionResetError when the client hangs up or takes nothing for `client_idle`."""
    r, w, capacity = _pipe()
    try:
        pending = memoryview(head)
        delivered = received = in_pipe = 0
        reading = remaining > 0
        quiet_client = quiet_store = 0.0
        while not stop.is_set():
            moved = False
            try:
                if pending:
                    n = os.write(client, pending)
                    pending = pending[n:]
                    delivered += n
                    moved = n > 0
                elif in_pipe:
                    n = os.splice(r, client, in_pipe, flags=_IN | (_MORE if reading else 0))
                    in_pipe -= n
                    delivered += n
                    moved = n > 0
            except BlockingIOError:
                pass
            except OSError as exc:  # EPIPE, ECONNRESET: the client hung up
                raise ConnectionResetError(str(exc)) from exc
            if reading and in_pipe < capacity:
                try:
                    want = min(capacity - in_pipe, remaining - received)
                    n = os.splice(upstream, w, want, flags=_IN)
                except BlockingIOError:
                    n = -1
                except OSError:
                    n = 0  # the store broke the connection: a short body
                if n == 0:
                    reading = False
                elif n > 0:
                    received += n
                    in_pipe += n
                    reading = received < remaining
                    moved = True
            if not pending and not in_pipe and not reading:
                break
            if moved:
                quiet_client = quiet_store = 0.0
                continue
            writing = bool(pending) or in_pipe > 0
            wants_store = reading and in_pipe < capacity
            poller = select.poll()
            poller.register(client, select.POLLOUT if writing else 0)
            if wants_store:
                poller.register(upstream, select.POLLIN)
            events = poller.poll(1000)
            if any(fd == client and ev & (select.POLLERR | select.POLLHUP) for fd, ev in events):
                raise ConnectionResetError("client closed the connection")
            if events:
                continue
            if writing:
                quiet_client += 1.0
                if quiet_client >= client_idle:
                    raise ConnectionResetError(f"client took no data for {client_idle:g} s")
            if wants_store:
                quiet_store += 1.0
                if quiet_store >= idle:
                    reading = False  # the store fell silent: what is in the pipe still goes
        return delivered
    finally:
        os.close(r)
        os.close(w)


def _relay_owning(
    client: int, body: SocketBody, stop: threading.Event, idle: float, client_idle: float
) -> tuple[int, str]:
    """`relay`, closing the client's dup and the store's connection at the end; returns
    the bytes delivered and why the client went, if it did."""
    with COUNT.lock:
        COUNT.started += 1
        COUNT.running += 1
    try:
        sent = relay(client, body.sock.fileno(), body.head, body.remaining, stop, idle, client_idle)
        return sent, ""
    except ConnectionResetError as exc:
        return -1, str(exc)
    finally:
        os.close(client)
        body.sock.close()
        with COUNT.lock:
            COUNT.running -= 1


async def _headers_out(request: web.BaseRequest, resp: web.StreamResponse) -> None:
    """Prepare `resp` and wait until its headers have left the transport's buffer: the
    body must follow them on the wire."""
    await resp.prepare(request)
    transport = request.transport
    assert transport is not None
    await headers_sent(transport)


async def send(
    request: web.BaseRequest,
    resp: web.StreamResponse,
    body: SocketBody,
    count: int,
    idle: float,
    client_idle: float,
) -> web.StreamResponse:
    """Answer with `resp` (its headers announcing `count` bytes) and `body` spliced after
    them; `body` is closed in every case. A short body aborts the connection. `idle`:
    seconds the store may stay silent (`storage.idle_timeout`); `client_idle`: seconds the
    client may take nothing (`http.idle_timeout`, which the connection guard cannot see
    while bytes bypass the transport)."""
    transport = request.transport
    try:
        if transport is None or not usable(request):
            raise ConnectionResetError("Connection lost")
        await _headers_out(request, resp)
        client = os.dup(transport.get_extra_info("socket").fileno())
    except BaseException:
        body.sock.close()
        raise
    stop = threading.Event()
    job = _RELAYS.get().submit(_relay_owning, client, body, stop, idle, client_idle)
    try:
        delivered, gone = await asyncio.wrap_future(job)
    except asyncio.CancelledError:
        if job.cancel():  # cancelled before a thread took it: its descriptors are ours
            os.close(client)
            body.sock.close()
        raise
    except Exception as exc:  # no pipe (descriptors exhausted): the thread closed both
        log.error("splice relay failed", error=repr(exc))
        delivered, gone = -1, ""
    finally:
        stop.set()  # a cancelled request ends the thread within a second
    if delivered != count:
        if not gone:
            log.error("blob read failed mid-body", sent=delivered, expected=count)
        transport.abort()  # a short body must not look like a complete one
        return resp
    await resp.write_eof()
    return resp
