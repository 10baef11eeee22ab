"""The latency proxy forwards every byte, in order, both ways, never sooner than its delay, and stops cleanly."""

import hashlib
import socket
import socketserver
import threading
import time

import pytest

from devstack.latency_proxy import LatencyProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address
    server.shutdown()
    server.server_close()


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := s.recv(65536):
            received += chunk
    return bytes(received)


def test_bytes_arrive_complete_and_in_order(echo):
    proxy = LatencyProxy(echo, delay=0.001)
    port = proxy.start()
    try:
        payload = hashlib.sha256(b"seed").digest() * 200_000  # 6.4 MB through both directions
        assert _roundtrip(port, payload) == payload
    finally:
        proxy.stop()


def test_a_round_trip_is_never_faster_than_twice_the_one_way_delay(echo):
    proxy = LatencyProxy(echo, delay=0.1)
    port = proxy.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            started = time.monotonic()
            s.sendall(b"ping")
            assert s.recv(16) == b"ping"
            assert time.monotonic() - started >= 0.2
    finally:
        proxy.stop()


def test_stop_closes_the_listener_and_open_connections(echo):
    proxy = LatencyProxy(echo, delay=0)
    port = proxy.start()
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.sendall(b"x")
    assert held.recv(1) == b"x"  # the connection is up, through the proxy
    proxy.stop()
    assert held.recv(16) == b""  # the proxy closed its side
    held.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_negative_delay_is_refused():
    with pytest.raises(ValueError, match="delay must be >= 0"):
        LatencyProxy(("127.0.0.1", 9), delay=-1)
