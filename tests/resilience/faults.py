"""Network faults in front of the real OTLP receiver: a TCP proxy on 127.0.0.1 that can misbehave.

``FaultProxy(upstream_port)`` listens on its own port and, in ``forward`` mode, pumps bytes to the receiver
(so it serves OTLP/HTTP and OTLP/gRPC alike). The other faults are what a dead or hostile network does:

=================  =====================================================================================
``refuse()``       close the listening socket: new connections are refused (ECONNREFUSED)
``restore()``      listen again on the same port and forward (the collector came back)
``blackhole()``    accept connections and read requests, never answer
``reset()``        read the first bytes of a request, then reset the connection (RST) mid-body
``forward()``      normal operation
=================  =====================================================================================

Switching mode closes the connections already open, so clients reconnect and meet the new behaviour.
Slow answers, error statuses, Retry-After and partial success are programmed on the receiver itself
(``OTLPReceiver.program``).
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Literal

Mode = Literal["forward", "blackhole", "reset"]

__all__ = ["FaultProxy", "Mode", "fault_proxy"]


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.mode: Mode = "forward"
        self.connections_accepted = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._stopping = False
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._close_listener()
        self._drop_connections()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults ------------------------------------------------------------------------------------------

    def forward(self) -> None:
        self._switch("forward")

    def blackhole(self) -> None:
        self._switch("blackhole")

    def reset(self) -> None:
        self._switch("reset")

    def refuse(self) -> None:
        """Stop listening: connections are refused until `restore()`."""
        self._close_listener()
        self._drop_connections()

    def restore(self) -> None:
        """Listen again on the same port, forwarding."""
        self.mode = "forward"
        if self._listener is None:
            self._listen()

    # -- internals ---------------------------------------------------------------------------------------

    def _switch(self, mode: Mode) -> None:
        self.mode = mode
        self._drop_connections()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(100):  # the old port may linger for a moment after close
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                threading.Event().wait(0.02)
        else:
            raise RuntimeError(f"port {self.port} did not become free")
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name="fault-proxy-accept", daemon=True
        )
        self._accept_thread.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(2.0)
            self._accept_thread = None

    def _drop_connections(self) -> None:
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.connections_accepted += 1
            self._track(client)
            threading.Thread(target=self._serve, args=(client, self.mode), name="fault-proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket, mode: Mode) -> None:
        try:
            if mode == "blackhole":
                while client.recv(65536):
                    pass
            elif mode == "reset":
                client.recv(256)  # the request line and some headers / the HTTP/2 preface: then cut
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
            else:
                self._pump(client)
        except (OSError, ValueError):  # a socket closed under us by a mode switch
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _pump(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5.0)
        upstream.settimeout(None)
        self._track(upstream)
        try:
            pair = {client: upstream, upstream: client}
            while True:
                readable, _, _ = select.select(list(pair), [], [], 1.0)
                if self._stopping:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        finally:
            with contextlib.suppress(OSError):
                upstream.close()


@contextlib.contextmanager
def fault_proxy(upstream_port: int) -> Iterator[FaultProxy]:
    with FaultProxy(upstream_port) as proxy:
        yield proxy
