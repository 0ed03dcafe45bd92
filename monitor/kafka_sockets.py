"""Close the socket of a failed kafka-python connection attempt.

kafka-python 3.0 (``kafka/net/inet.py``, ``KafkaNetSocket.sock_connect``) raises when a
connection attempt is refused or times out without closing the socket it made. The socket then
stays open until the garbage collector finds it: one file descriptor per reconnect attempt
while a broker is down, and a ``ResourceWarning`` at an arbitrary later moment. A timed-out
attempt on a loaded machine can leave a *connected* socket behind (on loopback the kernel
completes the connection at once; the attempt times out when kafka-python's network thread
gets to it too late).

:func:`close_failed_connects` wraps that one method so the socket is closed before the error
propagates. It is idempotent, and every driftwatch module that builds kafka-python clients
calls it first.
"""

from __future__ import annotations

import socket
from typing import Any

from kafka.net.inet import KafkaNetSocket

_MARK = "_driftwatch_closes_failed_connects"


def close_failed_connects() -> None:
    """Make kafka-python close the socket of every connection attempt that raises."""
    original = KafkaNetSocket.sock_connect
    if getattr(original, _MARK, False):
        return

    async def sock_connect(
        self: Any, net: Any, sock: socket.socket, sockaddr: Any, timeout_at: Any = None
    ) -> Any:
        try:
            return await original(self, net, sock, sockaddr, timeout_at=timeout_at)
        except BaseException:
            sock.close()
            raise

    setattr(sock_connect, _MARK, True)
    KafkaNetSocket.sock_connect = sock_connect
