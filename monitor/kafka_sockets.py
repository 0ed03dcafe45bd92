"""Make kafka-python 3.0 close every socket it opens.

kafka-python 3.0.12 leaves sockets to the garbage collector on four paths. Each costs a file
descriptor until a collection, and a ``ResourceWarning`` at an arbitrary later moment; during
a broker outage, one per reconnect attempt.

1. A refused or timed-out connection attempt (``kafka/net/inet.py``,
   ``KafkaNetSocket.sock_connect``) raises without closing its socket. A timed-out attempt on
   a loaded machine can leave a *connected* socket behind: on loopback the kernel completes
   the connection at once, and the attempt times out when kafka-python's network thread gets
   to it too late.
2. A failed TLS handshake (``KafkaSSLTransport.handshake``) raises without closing the
   transport it was given.
3. ``KafkaTCPTransport.close()`` with requests still buffered marks the transport closed and
   leaves the socket to the write task. If the send then fails, the write task calls
   ``abort()``, which does nothing on a transport already marked closed.
4. ``KafkaNetClient.close()`` (every consumer, producer and admin client) closes its
   connections and then stops the network loop, cancelling any write task still waiting. A
   connection whose close waited for that write keeps its socket.

:func:`release_kafka_sockets` wraps exactly those four methods: a failed attempt or handshake
closes its socket before the error propagates, ``abort()`` closes the socket of a transport
whose close is still pending, and a client's ``close()`` finishes by closing the socket of
every connection that still has one (its network thread has stopped by then). It is
idempotent, and every driftwatch module that builds kafka-python clients calls it first.
"""

from __future__ import annotations

import socket
from typing import Any

from kafka.net.compat import KafkaNetClient
from kafka.net.inet import KafkaNetSocket
from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport

from monitor.patching import wrap, wrapped

_MARK = "_driftwatch_releases_sockets"


def release_kafka_sockets() -> None:
    """Make kafka-python close the socket of every failed, aborted or abandoned connection."""
    if wrapped(KafkaNetClient.close, _MARK):
        return
    wrap(KafkaNetSocket, "sock_connect", _closing_failed_connect, _MARK)
    wrap(KafkaSSLTransport, "handshake", _aborting_failed_handshake, _MARK)
    wrap(KafkaTCPTransport, "abort", _abort_closes_pending_close, _MARK)
    wrap(KafkaNetClient, "close", _close_leftover_sockets, _MARK)


def _closing_failed_connect(original: Any) -> Any:
    async def sock_connect(
        self: Any, net: Any, sock: socket.socket, sockaddr: Any, timeout_at: Any = None
    ) -> Any:
        try:
            return await original(self, net, sock, sockaddr, timeout_at=timeout_at)
        except BaseException:  # also GeneratorExit: the network loop cancelled the attempt
            sock.close()
            raise

    return sock_connect


def _aborting_failed_handshake(original: Any) -> Any:
    async def handshake(self: Any) -> Any:
        try:
            return await original(self)
        except BaseException:
            self.abort()
            raise

    return handshake


def _abort_closes_pending_close(original: Any) -> Any:
    def abort(self: Any, error: BaseException | None = None) -> Any:
        if self._closed and self._sock is not None:  # close() was waiting for buffered writes
            self._write_buffer.clear()
            self._read = self._write = False
            return self._close(error)
        return original(self, error)

    return abort


def _close_leftover_sockets(original: Any) -> Any:
    def close(self: Any, node_id: Any = None) -> Any:
        result = original(self, node_id)
        if node_id is None:  # the whole client: its network loop has stopped
            for conn in list(self._manager._conns.values()):
                transport = conn.transport
                sock = getattr(transport, "_sock", None)
                if sock is not None:
                    transport._sock = None
                    sock.close()
        return result

    return close
