#!/usr/bin/env python3
"""Hostile clients against a running relay on this machine: how much memory can they pin?

    bench/hostile_clients.py --url http://127.0.0.1:18190 --pid PID [--connections 1000]
        [--key pk_...] [--load bogus|valid|head|h2|idle|all] [--send at-once|slow] [--tsv]

bench/hostile_clients.sh starts a relay for each load and runs this script against it.

Each load is bounded in count (--connections, at most 5,000; --streams, at most 10,000) and in
time (--hold), and goes to 127.0.0.1 only:

  bogus  N HTTP/1.1 connections POST /api/v1/event with `Authorization: Bearer pk_bogus...` and
         `Content-Length: 65536`, each sending 60 KiB of its body (at once, or 1 KiB every
         --slow-interval), then held open: how many got a 401, how soon, and who closed.
  valid  The same with a valid key (--key, an account on an unlimited plan): the relay reads
         the bodies, which never complete (60 of 64 KiB), until server.body_timeout.
  head   N connections that send a request head of --head-bytes (default 15 KiB, just under
         the relay's 16 KiB limit) at once or slowly and never end it: what a client without
         any key can pin until server.header_timeout (or, past the limit, the 431 it gets).
  h2     One cleartext HTTP/2 prior-knowledge connection opening --streams streams (HEADERS
         frames declaring content-length 65536): at once, the preface, SETTINGS, every HEADERS
         frame and 64 KiB of DATA in one burst; slow, the preface and SETTINGS first, then a
         HEADERS frame at a time (with DATA only if the relay answers as HTTP/2). What the
         relay sends back, and when it closes.
  idle   N connections (default 1,100 with --load all) that send nothing: when the relay cuts
         them off, and how long a fresh GET /healthz waits meanwhile.

The relay's memory is read from /proc/PID/status: VmRSS before the load (the median of a
second's samples), its highest value sampled every 10 ms during the load, VmHWM (the kernel's
peak, reset through /proc/PID/clear_refs before each load when permitted), VmRSS once the
relay has closed the load's connections, and VmRSS again after a little ordinary traffic (the
allocator gives freed memory back lazily). "relay conns" counts the sockets the relay holds
(/proc/PID/fd) beyond those it held before; "KiB/relay conn" divides the rise of the peak over
the baseline by its highest value. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import multiprocessing
import os
import resource
import socket
import statistics
import struct
import sys
import time
import urllib.parse
from dataclasses import dataclass, field

MAX_CONNECTIONS = 5000
MAX_STREAMS = 10000
DECLARED = 65536
SENT = 60 * 1024


# --- the relay's memory -------------------------------------------------------------------------


class Relay:
    def __init__(self, pid: int):
        self.pid = pid
        self.status_path = f"/proc/{pid}/status"
        self.fd_dir = f"/proc/{pid}/fd"
        self.status()  # fails early when the process is not there or not readable

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM, RssAnon, Threads (kB, or a count)."""
        values = {}
        with open(self.status_path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
                    values[key] = int(rest.split()[0])
        return values

    def rss_kb(self) -> int:
        return self.status()["VmRSS"]

    def sockets(self) -> int:
        count = 0
        try:
            for name in os.listdir(self.fd_dir):
                try:
                    if os.readlink(f"{self.fd_dir}/{name}").startswith("socket:"):
                        count += 1
                except OSError:
                    pass
        except OSError:
            return -1
        return count

    def reset_hwm(self) -> bool:
        """Sets VmHWM back to the current RSS (Linux >= 4.0), when this user may."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False


class Sampler:
    """Samples the relay's RSS every `interval` and its sockets every fifth time, in a process
    of its own so that a busy event loop here does not thin out the samples."""

    def __init__(self, relay: Relay, interval: float = 0.01):
        self.relay, self.interval = relay, interval
        self.peak_kb = 0
        self.peak_at = 0.0
        self.peak_sockets = 0
        self.samples = 0
        self.process: multiprocessing.Process | None = None

    def start(self) -> None:
        self.stop_flag = multiprocessing.Event()
        self.receive, send = multiprocessing.Pipe(duplex=False)
        self.process = multiprocessing.Process(target=self.run, args=(send,), daemon=True)
        self.process.start()
        send.close()

    def run(self, send) -> None:
        started = time.monotonic()
        peak_kb, peak_at, peak_sockets, i = 0, 0.0, 0, 0
        while not self.stop_flag.is_set():
            try:
                rss = self.relay.rss_kb()
            except OSError:
                break
            if rss > peak_kb:
                peak_kb, peak_at = rss, time.monotonic() - started
            if i % 5 == 0:
                peak_sockets = max(peak_sockets, self.relay.sockets())
            i += 1
            time.sleep(self.interval)
        send.send((peak_kb, peak_at, peak_sockets, i))

    async def stop(self) -> None:
        if self.process:
            self.stop_flag.set()
            self.peak_kb, self.peak_at, self.peak_sockets, self.samples = await asyncio.to_thread(self.receive.recv)
            self.process.join()


def settled_rss(relay: Relay, seconds: float = 1.0) -> int:
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(relay.rss_kb())
        time.sleep(0.05)
    return int(statistics.median(samples))


# --- HTTP/1.1 clients ---------------------------------------------------------------------------


@dataclass
class Conn:
    connected: bool = False
    connect_error: str = ""
    body_sent: int = 0
    send_error: str = ""
    head_at: float | None = None
    status: int | None = None
    answer_at: float | None = None
    closed_at: float | None = None
    close_kind: str = ""  # "eof", "reset", or "" (still open)
    received: bytes = b""


@dataclass
class LoadResult:
    name: str
    conns: list[Conn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    healthz: str = "-"
    rss_before: int = 0
    rss_peak: int = 0
    peak_at: float = 0.0
    hwm: int | None = None
    rss_end: int = 0
    rss_after: int = 0
    rss_traffic: int = 0
    sockets_before: int = 0
    sockets_peak: int = 0
    sockets_left: int = 0
    seconds: float = 0.0


def http_status(data: bytes) -> int | None:
    if data.startswith(b"HTTP/1.") and len(data) >= 12:
        try:
            return int(data[9:12])
        except ValueError:
            return None
    return None


async def open_conn(host: str, port: int, timeout: float):
    return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)


async def reader_loop(reader: asyncio.StreamReader, conn: Conn, t0: float) -> None:
    """Reads until the relay closes (EOF or reset), noting the answer's status and time."""
    while True:
        try:
            data = await reader.read(65536)
        except (ConnectionResetError, BrokenPipeError) as err:
            conn.closed_at, conn.close_kind = time.monotonic() - t0, "reset"
            if not conn.send_error:
                conn.send_error = type(err).__name__
            return
        except OSError as err:
            conn.closed_at, conn.close_kind = time.monotonic() - t0, f"error {err.errno}"
            return
        if not data:
            conn.closed_at, conn.close_kind = time.monotonic() - t0, "eof"
            return
        if conn.answer_at is None:
            conn.answer_at = time.monotonic() - t0
        if len(conn.received) < 4096:
            conn.received += data[: 4096 - len(conn.received)]
        if conn.status is None:
            conn.status = http_status(conn.received)


async def post_client(args, key: str, conn: Conn, t0: float, go: asyncio.Event,
                      host: str, port: int, keep: list) -> None:
    try:
        reader, writer = await open_conn(host, port, args.connect_timeout)
    except (OSError, asyncio.TimeoutError) as err:
        conn.connect_error = type(err).__name__
        return
    conn.connected = True
    keep.append(writer)
    await go.wait()  # all connections open first, then the requests go out together
    head = (
        f"POST /api/v1/event HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {DECLARED}\r\n"
    ).encode()
    if args.big_head:
        # The head itself is what is sent slowly or at once: --head-bytes of it, never ended.
        pad = b"X-Pad: "
        body = pad + b"a" * max(0, args.head_bytes - len(head) - len(pad))
    else:
        head += b"\r\n"
        prefix = b'{"category":"load","description":"'
        body = prefix + b"x" * (SENT - len(prefix))
    read = asyncio.get_running_loop().create_task(reader_loop(reader, conn, t0))
    try:
        writer.write(head)
        conn.head_at = time.monotonic() - t0
        if args.send == "at-once":
            writer.write(body)
            await writer.drain()
            conn.body_sent = len(body)
        else:
            chunk = 1024
            for i in range(0, len(body), chunk):
                if conn.closed_at is not None or writer.transport.is_closing():
                    break
                writer.write(body[i : i + chunk])
                await writer.drain()
                conn.body_sent = i + len(body[i : i + chunk])
                await asyncio.sleep(args.slow_interval)
    except (ConnectionResetError, BrokenPipeError, OSError) as err:
        conn.send_error = type(err).__name__
    await read


async def idle_client(args, conn: Conn, t0: float, host: str, port: int, keep: list) -> None:
    try:
        reader, writer = await open_conn(host, port, args.connect_timeout)
    except (OSError, asyncio.TimeoutError) as err:
        conn.connect_error = type(err).__name__
        return
    conn.connected = True
    conn.head_at = time.monotonic() - t0
    keep.append(writer)
    await reader_loop(reader, conn, t0)


async def healthz(host: str, port: int, timeout: float) -> str:
    """One GET /healthz on a fresh connection: its status and how long it took."""
    started = time.monotonic()
    try:
        reader, writer = await open_conn(host, port, timeout)
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(4096), timeout - (time.monotonic() - started))
        writer.close()
        status = http_status(data)
        return f"{status} in {time.monotonic() - started:.2f}s"
    except asyncio.TimeoutError:
        return f"no answer in {timeout:.0f}s"
    except OSError as err:
        return f"{type(err).__name__} after {time.monotonic() - started:.2f}s"


async def run_http1(args, relay: Relay, name: str, count: int, key: str | None) -> LoadResult:
    host, port = args.host, args.port
    result = LoadResult(name=name)
    conns = [Conn() for _ in range(count)]
    result.conns = conns
    keep: list = []
    go = asyncio.Event()
    t0 = time.monotonic()
    sampler = Sampler(relay)
    sampler.start()
    if name == "idle":
        tasks = [asyncio.create_task(idle_client(args, c, t0, host, port, keep)) for c in conns]
    else:
        tasks = [
            asyncio.create_task(post_client(args, key, c, t0, go, host, port, keep)) for c in conns
        ]
    # Wait until every connection is open (or failed), bounded.
    deadline = t0 + args.connect_timeout + 5
    while time.monotonic() < deadline:
        done = sum(1 for c in conns if c.connected or c.connect_error)
        if done == count:
            break
        await asyncio.sleep(0.02)
    opened_in = time.monotonic() - t0
    result.notes.append(
        f"{sum(c.connected for c in conns)} of {count} connections open in {opened_in:.2f}s"
    )
    go.set()
    # A fresh client meanwhile: does the relay still answer?
    await asyncio.sleep(0.5)
    result.healthz = await healthz(host, port, args.healthz_timeout)
    # Hold until the relay has closed every connection, or every connection has its answer
    # and --close-grace has passed since the last one, or --hold is up.
    hold_end = t0 + args.hold
    while time.monotonic() < hold_end:
        if all(t.done() for t in tasks):
            break
        live = [c for c in conns if c.connected]
        if name != "idle" and live and all(c.answer_at is not None or c.closed_at is not None for c in live):
            last = max((c.answer_at or c.closed_at or 0) for c in live)
            if time.monotonic() - t0 > last + args.close_grace:
                break
        await asyncio.sleep(0.05)
    result.seconds = time.monotonic() - t0
    await sampler.stop()
    result.rss_end = relay.rss_kb()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for writer in keep:
        writer.transport.abort()
    result.rss_peak, result.peak_at, result.sockets_peak = (
        sampler.peak_kb, sampler.peak_at, sampler.peak_sockets,
    )
    return result


# --- HTTP/2 by hand ----------------------------------------------------------------------------


def h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name, no Huffman coding."""

    def length(n: int) -> bytes:  # 7-bit prefix integer, H bit clear
        if n < 127:
            return bytes([n])
        out, n = [127], n - 127
        while n >= 128:
            out.append((n % 128) + 128)
            n //= 128
        out.append(n)
        return bytes(out)

    return b"\x00" + length(len(name)) + name + length(len(value)) + value


async def run_h2(args, relay: Relay) -> LoadResult:
    host, port = args.host, args.port
    result = LoadResult(name="h2")
    conn = Conn()
    result.conns = [conn]
    t0 = time.monotonic()
    sampler = Sampler(relay)
    sampler.start()
    try:
        reader, writer = await open_conn(host, port, args.connect_timeout)
    except (OSError, asyncio.TimeoutError) as err:
        conn.connect_error = type(err).__name__
        await sampler.stop()
        return result
    conn.connected = True
    read = asyncio.create_task(reader_loop(reader, conn, t0))
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    settings = h2_frame(0x4, 0, 0, b"")
    fields_common = (
        hpack_literal(b":method", b"POST") + hpack_literal(b":scheme", b"http")
        + hpack_literal(b":path", b"/api/v1/event")
        + hpack_literal(b":authority", f"{host}:{port}".encode())
        + hpack_literal(b"authorization", b"Bearer pk_bogus" + b"0" * 40)
        + hpack_literal(b"content-type", b"application/json")
        + hpack_literal(b"content-length", str(DECLARED).encode())
    )
    if args.send == "at-once":
        # The attack as a client would send it: everything in one burst, without waiting for
        # the server's SETTINGS; DATA within the initial 64 KiB connection window.
        burst = [preface, settings]
        for i in range(args.streams):
            burst.append(h2_frame(0x1, 0x4, 2 * i + 1, fields_common))
            if i < 4:
                burst.append(h2_frame(0x0, 0, 2 * i + 1, b"x" * 16383))
        data = b"".join(burst)
        writer.write(data)
        conn.head_at = time.monotonic() - t0
        try:
            await asyncio.wait_for(writer.drain(), 5)
            conn.body_sent = len(data)
        except (OSError, asyncio.TimeoutError) as err:
            conn.send_error = type(err).__name__
        try:
            await asyncio.wait_for(asyncio.shield(read), max(0.1, min(args.hold, 10)))
        except asyncio.TimeoutError:
            pass
        result.notes.append(
            f"burst of preface + SETTINGS + {args.streams} HEADERS frames ({len(data)} bytes): "
            + (f"the write failed ({conn.send_error})" if conn.send_error else "all handed to the kernel")
            + f"; the relay sent {len(conn.received)} bytes"
            + (f" ({conn.received[:24].hex()})" if conn.received else "")
            + (f" and closed ({conn.close_kind}) at {conn.closed_at * 1000:.0f} ms" if conn.closed_at is not None else ", connection still open")
        )
        return await finish_h2(args, relay, result, sampler, read, writer, t0)
    writer.write(preface + settings)
    conn.head_at = time.monotonic() - t0
    try:
        await writer.drain()
    except OSError as err:
        conn.send_error = type(err).__name__
    # What does the relay answer to the preface? An HTTP/2 server sends its SETTINGS at once.
    waited_until = time.monotonic() + 2.0
    while time.monotonic() < waited_until and conn.closed_at is None and not conn.received:
        await asyncio.sleep(0.01)
    served = conn.received[:9][3:4] == b"\x04"  # a SETTINGS frame header
    result.notes.append(
        f"after preface+SETTINGS: relay sent {len(conn.received)} bytes"
        + (f" ({conn.received[:24].hex()})" if conn.received else "")
        + (f", closed ({conn.close_kind}) at {conn.closed_at * 1000:.0f} ms" if conn.closed_at is not None else ", still open after 2 s")
        + ("; it answered as HTTP/2: REGRESSION" if served else "")
    )
    # Then the streams, whatever happened: how far does a client get?
    frames_sent = 0
    data_sent = 0
    window = 65535  # the connection's initial flow-control window: DATA only within it
    try:
        for i in range(args.streams):
            if conn.closed_at is not None or writer.transport.is_closing():
                break
            stream = 2 * i + 1
            writer.write(h2_frame(0x1, 0x4, stream, fields_common))  # HEADERS, END_HEADERS
            if served and window > 0:
                chunk = min(window, 16384)
                writer.write(h2_frame(0x0, 0, stream, b"x" * chunk))
                window -= chunk
                data_sent += chunk
            # Handed to the kernel a frame at a time, so the count stops where the relay did.
            await asyncio.wait_for(writer.drain(), 5)
            frames_sent += 1
    except (OSError, asyncio.TimeoutError) as err:
        conn.send_error = type(err).__name__
    result.notes.append(
        f"HEADERS frames the kernel took: {frames_sent} of {args.streams}, DATA bytes {data_sent}"
        + (f", then {conn.send_error}" if conn.send_error else "")
        + (f"; relay closed ({conn.close_kind}) at {conn.closed_at * 1000:.0f} ms" if conn.closed_at is not None else "")
    )
    try:
        await asyncio.wait_for(asyncio.shield(read), max(0.1, min(args.hold, 10)))
    except asyncio.TimeoutError:
        pass
    return await finish_h2(args, relay, result, sampler, read, writer, t0)


async def finish_h2(args, relay, result, sampler, read, writer, t0) -> LoadResult:
    result.healthz = await healthz(args.host, args.port, args.healthz_timeout)
    result.seconds = time.monotonic() - t0
    await sampler.stop()
    result.rss_end = relay.rss_kb()
    read.cancel()
    await asyncio.gather(read, return_exceptions=True)
    writer.transport.abort()
    result.rss_peak, result.peak_at, result.sockets_peak = (
        sampler.peak_kb, sampler.peak_at, sampler.peak_sockets,
    )
    return result


# --- driving a load -----------------------------------------------------------------------------


def wait_for_sockets(relay: Relay, baseline: int, limit: float) -> int:
    """Waits (up to `limit` s) until the relay holds no more sockets than before the load."""
    end = time.monotonic() + limit
    left = relay.sockets() - baseline
    while left > 0 and time.monotonic() < end:
        time.sleep(0.2)
        left = relay.sockets() - baseline
    return max(left, 0)


def run_load(args, relay: Relay, name: str) -> LoadResult:
    result_sockets_before = relay.sockets()
    rss_before = settled_rss(relay)
    reset = relay.reset_hwm()
    if name == "h2":
        result = asyncio.run(run_h2(args, relay))
    elif name == "idle":
        result = asyncio.run(run_http1(args, relay, "idle", args.idle_connections, None))
    else:
        key = args.key if name == "valid" else "pk_bogus" + os.urandom(20).hex()
        args.big_head = name == "head"
        result = asyncio.run(run_http1(args, relay, name, args.connections, key))
    result.sockets_before = result_sockets_before
    result.rss_before = rss_before
    result.hwm = relay.status()["VmHWM"] if reset else None
    if not reset:
        result.notes.append("VmHWM could not be reset (no write access to clear_refs)")
    result.sockets_left = wait_for_sockets(relay, result_sockets_before, args.settle)
    time.sleep(1.0)
    result.rss_after = settled_rss(relay)
    # The allocator may give freed memory back only when the relay next allocates: a little
    # ordinary traffic (20 GET /healthz, one every 100 ms), then the RSS again.
    for _ in range(20):
        asyncio.run(healthz(args.host, args.port, 5))
        time.sleep(0.1)
    time.sleep(1.0)
    result.rss_traffic = settled_rss(relay)
    return result


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def describe(result: LoadResult, args) -> tuple[list[str], list[str]]:
    """A table row and the detail lines for one load."""
    conns = result.conns
    live = [c for c in conns if c.connected]
    statuses: dict[str, int] = {}
    for c in live:
        k = str(c.status) if c.status else ("none")
        statuses[k] = statuses.get(k, 0) + 1
    answered = [c.answer_at - (c.head_at or 0) for c in live if c.answer_at is not None]
    closed = [c for c in live if c.closed_at is not None]
    closed_times = [c.closed_at - (c.head_at or 0) for c in closed]
    kinds: dict[str, int] = {}
    for c in closed:
        kinds[c.close_kind] = kinds.get(c.close_kind, 0) + 1
    still = len(live) - len(closed)
    answers = ", ".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
    answer_time = (
        f"{pct(answered, 0.5):.2f}/{max(answered):.2f}" if answered else "-"
    )
    close_time = (
        f"{pct(closed_times, 0.5):.2f}/{max(closed_times):.2f}" if closed_times else "-"
    )
    # Per connection the relay held at once (fewer than were opened when its limit is lower).
    pinned = max(result.rss_peak, result.hwm or 0) - result.rss_before
    held = max(result.sockets_peak - result.sockets_before, 0) or len(live)
    per_conn = f"{pinned / max(held, 1):.1f}" if result.name != "h2" else "-"
    name = result.name
    if name == "head":
        name += f" {args.head_bytes / 1024:g} KiB"
    label = (name + f" ({args.send})" if result.name != "idle" else name) + args.tag
    row = [
        label,
        f"{len(live)}/{len(conns)}",
        str(max(result.sockets_peak - result.sockets_before, 0)),
        answers,
        answer_time,
        f"{len(closed)} ({','.join(f'{k}:{v}' for k, v in sorted(kinds.items()))})",
        close_time,
        str(still),
        mb(result.rss_before),
        mb(result.rss_peak),
        mb(result.hwm),
        mb(result.rss_after),
        mb(result.rss_traffic),
        per_conn,
        result.healthz,
    ]
    details = [f"[{label}] {note}" for note in result.notes]
    errors: dict[str, int] = {}
    for c in conns:
        for e in (c.connect_error and "connect " + c.connect_error, c.send_error and "send " + c.send_error):
            if e:
                errors[e] = errors.get(e, 0) + 1
    if errors:
        details.append(f"[{label}] client errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(errors.items())))
    if result.name in ("bogus", "valid", "head"):
        sent = [c.body_sent for c in live]
        what = "head" if result.name == "head" else "body"
        details.append(
            f"[{label}] {what} bytes sent per connection after the first line(s): min "
            f"{min(sent) if sent else 0}, max {max(sent) if sent else 0} (of "
            + (f"{args.head_bytes} bytes of head, never ended)" if what == "head" else f"{SENT} sent / {DECLARED} declared)")
        )
    details.append(
        f"[{label}] RSS peak at {result.peak_at:.2f}s of {result.seconds:.1f}s; RSS when the load "
        f"ended {mb(result.rss_end)} MB; relay sockets not closed {args.settle:.0f}s after: "
        f"{result.sockets_left}"
    )
    return row, details


HEADER = [
    "load", "conns open", "relay conns peak", "answers", "answer s p50/max",
    "closed by relay", "closed s p50/max", "still open", "RSS before MB", "RSS peak MB",
    "VmHWM MB", "RSS after MB", "after traffic MB", "KiB/relay conn", "healthz",
]


def print_table(rows: list[list[str]], header: bool = True) -> None:
    widths = [max(len(r[i]) for r in [HEADER] + rows) for i in range(len(HEADER))]
    for r in ([HEADER] if header else []) + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="the relay, http://127.0.0.1:PORT")
    p.add_argument("--pid", type=int, required=True, help="the relay's process id")
    p.add_argument("--connections", type=int, default=1000, help="connections of the POST loads")
    p.add_argument("--idle-connections", type=int, default=1100, help="connections of the idle load")
    p.add_argument("--streams", type=int, default=3000, help="HTTP/2 streams attempted")
    p.add_argument("--head-bytes", type=int, default=15 * 1024,
                   help="size of the head load's request heads (the relay's limit is 16 KiB)")
    p.add_argument("--key", help="a valid API key (the valid load)")
    p.add_argument("--load", default="all", choices=["bogus", "valid", "head", "h2", "idle", "all"])
    p.add_argument("--send", default="at-once", choices=["at-once", "slow"],
                   help="body at once, or 1 KiB every --slow-interval")
    p.add_argument("--slow-interval", type=float, default=0.1)
    p.add_argument("--hold", type=float, default=75.0,
                   help="longest a load lasts, s (the relay closing every connection ends it sooner)")
    p.add_argument("--close-grace", type=float, default=5.0,
                   help="s to wait for the relay to close a connection after its answer")
    p.add_argument("--settle", type=float, default=30.0,
                   help="longest wait after a load for the relay's sockets to close, s")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--healthz-timeout", type=float, default=60.0)
    p.add_argument("--no-header", action="store_true", help="print the table without its header")
    p.add_argument("--tsv", action="store_true", help="table rows tab-separated (for column -t)")
    p.add_argument("--tag", default="", help="appended to the load's name in the table")
    args = p.parse_args()
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.port:
        p.error("--url must be http://127.0.0.1:PORT")
    try:
        if url.hostname != "localhost" and not ipaddress.ip_address(url.hostname).is_loopback:
            raise ValueError
    except ValueError:
        p.error("--url must be on this machine (127.0.0.1)")
    if socket.gethostbyname(url.hostname) != "127.0.0.1":
        p.error("--url must resolve to 127.0.0.1")
    args.host, args.port = "127.0.0.1", url.port
    if not 1 <= args.connections <= MAX_CONNECTIONS or not 1 <= args.idle_connections <= MAX_CONNECTIONS:
        p.error(f"connections: 1 to {MAX_CONNECTIONS}")
    if not 256 <= args.head_bytes <= 1024 * 1024:
        p.error("--head-bytes: 256 to 1 MiB")
    if not 1 <= args.streams <= MAX_STREAMS:
        p.error(f"--streams: 1 to {MAX_STREAMS}")
    if not 1 <= args.hold <= 300 or not 0 <= args.settle <= 300:
        p.error("--hold: 1 to 300 s, --settle: 0 to 300 s")
    if args.load == "valid" and not args.key:
        p.error("--load valid needs --key")
    return args


def raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return
        except (ValueError, OSError):
            sys.exit(f"open-file limit {soft}/{hard} is below the {needed} this load needs: raise it (ulimit -n)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main() -> None:
    args = parse_args()
    # Writes after the relay has closed are expected here; asyncio would log each.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    raise_open_files(max(args.connections, args.idle_connections) + 256)
    relay = Relay(args.pid)
    loads = ["bogus", "valid", "head", "h2", "idle"] if args.load == "all" else [args.load]
    if "valid" in loads and not args.key:
        loads.remove("valid")
    rows, details = [], []
    for name in loads:
        result = run_load(args, relay, name)
        row, detail = describe(result, args)
        rows.append(row)
        details += detail
    if args.tsv:
        for r in ([] if args.no_header else [HEADER]) + rows:
            print("\t".join(r))
    else:
        print_table(rows, header=not args.no_header)
    for line in details:
        print(line)


if __name__ == "__main__":
    main()
