"""kafka-python's failed connection attempts leave no socket open (monitor/kafka_sockets.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.inet import KafkaNetSocket, create_connection
from kafka.net.selector import NetworkSelector

from monitor.kafka_sockets import close_failed_connects


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
    close_failed_connects()
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


def test_a_successful_connection_stays_open_and_the_wrapper_is_installed_once(
    made: list[socket.socket],
) -> None:
    close_failed_connects()
    wrapped = KafkaNetSocket.sock_connect
    close_failed_connects()
    assert KafkaNetSocket.sock_connect is wrapped
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
