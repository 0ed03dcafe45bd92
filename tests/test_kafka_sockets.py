"""kafka-python closes every socket it opens: failed connection attempts and handshakes, transports
aborted while their close waits, clients closed while a write waits (monitor/kafka_sockets.py)."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.compat import KafkaNetClient
from kafka.net.connection import KafkaConnection
from kafka.net.inet import KafkaNetSocket, create_connection
from kafka.net.selector import NetworkSelector
from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport

from monitor.kafka_sockets import release_kafka_sockets


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[socket.socket]]:
    """Every socket kafka-python creates during the test."""
    sockets: list[socket.socket] = []
    original = KafkaNetSocket.socket

    def record(self: KafkaNetSocket, *args: object) -> socket.socket:
        sock: socket.socket = original(self, *args)
        sockets.append(sock)
        return sock

    monkeypatch.setattr(KafkaNetSocket, "socket", record)
    release_kafka_sockets()
    yield sockets
    for sock in sockets:
        sock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_connection_closes_its_socket(made: list[socket.socket]) -> None:
    net = NetworkSelector()
    try:
        with pytest.raises(KafkaConnectionError, match=r"ECONNREFUSED|refused"):
            net.run(create_connection, net, "127.0.0.1", closed_port())
    finally:
        net.close()
    assert len(made) == 1
    assert made[0].fileno() == -1  # closed, not left to the garbage collector


def test_a_timed_out_connection_closes_its_socket(made: list[socket.socket]) -> None:
    with socket.socket() as server:  # a listener: the connection itself would succeed
        server.bind(("127.0.0.1", 0))
        server.listen()
        net = NetworkSelector()
        try:
            with pytest.raises(KafkaConnectionError, match="timed out"):
                net.run(
                    create_connection,
                    net,
                    "127.0.0.1",
                    server.getsockname()[1],
                    (),
                    None,
                    time.monotonic() - 1,  # already past: as when the network thread is late
                )
        finally:
            net.close()
    assert len(made) == 1 and made[0].fileno() == -1


def test_a_successful_connection_stays_open_and_the_wrappers_are_installed_once(
    made: list[socket.socket],
) -> None:
    release_kafka_sockets()
    methods = [
        KafkaNetSocket.sock_connect,
        KafkaSSLTransport.handshake,
        KafkaTCPTransport.abort,
        KafkaNetClient.close,
    ]
    release_kafka_sockets()
    assert methods == [
        KafkaNetSocket.sock_connect,
        KafkaSSLTransport.handshake,
        KafkaTCPTransport.abort,
        KafkaNetClient.close,
    ]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        net = NetworkSelector()
        try:
            sock = net.run(create_connection, net, "127.0.0.1", server.getsockname()[1])
        finally:
            net.close()
        assert sock is made[0] and sock.fileno() != -1
        assert sock.getpeername() == server.getsockname()


def test_a_send_failing_after_close_closes_the_socket() -> None:
    """close() with a request still buffered leaves the socket to the write task; when the send
    fails, the write task's abort() must close it although the transport is already closing."""
    release_kafka_sockets()
    net = NetworkSelector()
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.close()  # the broker went away: the send will fail with EPIPE
    try:
        transport = KafkaTCPTransport(net, ours)
        transport.write(b"a request")
        transport.close()
        assert ours.fileno() != -1  # waiting for the buffered request
        deadline = time.monotonic() + 10
        while ours.fileno() != -1 and time.monotonic() < deadline:
            net.poll(timeout_ms=100)  # the write task runs, its send fails, it aborts
        assert ours.fileno() == -1
        assert transport.is_closing()
    finally:
        net.close()
        ours.close()


def test_closing_a_client_closes_a_connection_still_waiting_to_write() -> None:
    """A client closes its connections, then stops its network loop, cancelling write tasks;
    the socket of a connection whose close waited for such a write is closed all the same."""
    release_kafka_sockets()
    client = KafkaNetClient(bootstrap_servers="127.0.0.1:9")
    ours, peer = socket.socketpair()  # the peer never reads: the write cannot finish
    ours.setblocking(False)
    try:
        transport = KafkaTCPTransport(client._net, ours)
        conn = KafkaConnection(client._net, node_id=0)
        conn.connection_made(transport)
        conn._init_future.success(True)  # initialized: close() waits for writes, no abort
        client._manager._conns[0] = conn
        transport.write(b"x" * (16 << 20))  # more than both socket buffers hold
        client.close()
        assert ours.fileno() == -1
    finally:
        ours.close()
        peer.close()


def test_a_failed_tls_handshake_closes_its_socket() -> None:
    release_kafka_sockets()
    net = NetworkSelector()
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    try:
        transport = KafkaSSLTransport(net, ours, host="localhost", ssl_check_hostname=False)
        tls = transport._sock
        peer.sendall(b"HTTP/1.1 400 not a TLS server\r\n\r\n")
        with pytest.raises(ssl.SSLError):
            net.run(transport.handshake)
        assert tls.fileno() == -1
        assert transport.is_closing()
    finally:
        net.close()
        peer.close()
