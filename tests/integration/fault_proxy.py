"""A registry's port with a fault injector in front: a TCP proxy that forwards every byte to
the real registry, and on the n-th request whose request line matches a pattern runs an
action (killing the registry, restarting it) before that request reaches it.

The PATH wrappers in ``faults`` catch a tool's process; a request made in-process (dcforge's
registry client) has no process to catch, so the fault is injected where every client's
requests pass. Nothing is answered by the proxy: a dead registry behind it shows as a
connection closed under the client, as a dead registry does.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

TAIL = 512  # a request line split across two reads is still seen


@dataclass
class Fault:
    pattern: re.Pattern[bytes]
    nth: int
    action: str  # shell, as the PATH wrappers' actions (faults.kill_registry, …)
    seen: int = 0
    fired: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    def __init__(self, listen_port: int, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.fault: Fault | None = None
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, pattern: bytes, nth: int, action: str) -> Fault:
        """On the ``nth`` request whose request line matches ``pattern`` (a regex over
        ``METHOD /path HTTP/1.1``), run ``action`` first."""
        with self.lock:
            self.fault = Fault(re.compile(pattern), nth, action)
            return self.fault

    def close(self) -> None:
        self.closing = True
        self.server.close()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()  # the registry is down: so is its port
            return
        upstream.settimeout(None)
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
        self._pump(client, upstream, True)

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        tail = b""
        try:
            while chunk := src.recv(65536):
                if requests:
                    tail = self._watch(tail, chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _watch(self, tail: bytes, chunk: bytes) -> bytes:
        seen = tail + chunk
        fault = self.fault
        if fault is not None:
            for match in re.finditer(rb"(?:^|\r\n)([A-Z]+ /\S* HTTP/1\.[01])\r\n", seen):
                if match.end() <= len(tail) or not fault.pattern.search(match.group(1)):
                    continue  # counted with the read before, or another request
                with self.lock:
                    fault.seen += 1
                    fire = fault.seen == fault.nth
                if fire:
                    subprocess.run(["sh", "-c", fault.action], check=False)
                    fault.fired.set()
        return seen[-TAIL:]


def start(listen_port: int, upstream_port: int) -> FaultProxy:
    return FaultProxy(listen_port, upstream_port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rewrite_port(config: Path, old: int, new: int) -> None:
    config.write_text(config.read_text().replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}"))
