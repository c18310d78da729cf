"""Fault injection for chaos tests: a TCP proxy that can refuse and cut connections, and pausing a
process (SIGSTOP) the way a hung server or a VM stall looks to its clients."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bridge.embedded import free_port


class TcpProxy:
    """127.0.0.1:`port` -> `target`. `cut()` drops every connection and refuses new ones until
    `restore()`: what a client sees when the server goes down or refuses connections.
    `accepted` counts connections made, so a test can see its clients came back afterwards."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._up = threading.Event()
        self._up.set()
        self._stopping = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        # While cut, the port stays bound but not listening: connecting gets ECONNREFUSED, as
        # from a server that is down, and no other process can take the port during a long outage.
        self._placeholder: socket.socket | None = None
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> TcpProxy:
        self._listen()
        self._thread.start()
        return self

    def _listen(self) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        listener.settimeout(0.2)
        self._listener = listener

    def _serve(self) -> None:
        while not self._stopping:
            if not self._up.is_set() or self._listener is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            src.settimeout(None)
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    @property
    def is_up(self) -> bool:
        """Accepting connections (not cut)."""
        return self._up.is_set()

    def cut(self) -> None:
        """Refuse new connections (the port is closed) and reset the open ones."""
        self._up.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if not self._stopping:
            self._hold_port()

    def _hold_port(self) -> None:
        """Bind the port without listening. The connections just reset still hold it for a moment
        (bind says EADDRINUSE), so try for a while; failing that the port is merely closed."""
        deadline = time.monotonic() + 5
        while self._placeholder is None and time.monotonic() < deadline:
            placeholder = socket.socket()
            placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                placeholder.bind(("127.0.0.1", self.port))
            except OSError:
                placeholder.close()
                time.sleep(0.1)
            else:
                self._placeholder = placeholder

    def restore(self) -> None:
        self._listen()
        self._up.set()

    @contextmanager
    def outage(self, seconds: float) -> Iterator[None]:
        """Refuse connections for `seconds` (the body runs during the outage), then accept again,
        also when the body fails."""
        self.cut()
        until = time.monotonic() + seconds
        try:
            yield
            time.sleep(max(until - time.monotonic(), 0))
        finally:
            self.restore()

    def stop(self) -> None:
        self._stopping = True
        self.cut()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None


@contextmanager
def paused(pid: int, seconds: float) -> Iterator[None]:
    """SIGSTOP `pid` for `seconds`, then SIGCONT, always: a process left stopped would hang every
    later test. Its sockets stay open and silent, unlike a crash: clients see timeouts, not resets."""
    os.kill(pid, signal.SIGSTOP)
    until = time.monotonic() + seconds
    try:
        yield  # the body runs while the process is stopped
        time.sleep(max(until - time.monotonic(), 0))
    finally:
        os.kill(pid, signal.SIGCONT)
