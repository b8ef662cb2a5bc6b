"""A scriptable HTTP/1.1 server on 127.0.0.1 (stdlib `http.server`, one thread per connection) for
provider adapter tests.

Each request takes the next scripted `Reply` (or a function of the request returning one), else the
server's default. A reply can wait before answering, stream chunks with chunked transfer encoding
(with a delay between them), stop early with a clean end (`end="eof"`) or by dropping the
connection (`end="reset"`). Whenever the client goes away while a reply is in progress, the server
records it in `disconnects` (waits watch the socket, so a disconnect is seen at once, not at the
next write).

Importing: test modules put `services/run-executor/tests` on `sys.path` and import `fakes.…`.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal


@dataclass(frozen=True)
class Recorded:
    """A request as the server received it (`path` is the raw request target, query included)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: list[bytes] | None = None  # set: a chunked (streamed) body
    delay_s: float = 0.0  # before the status line
    chunk_delay_s: float = 0.0  # before every chunk
    pause_before: dict[int, float] = field(default_factory=dict)  # extra wait before chunk i
    cut_after: int | None = None  # stream only the first n chunks ...
    end: Literal["complete", "eof", "reset"] = "complete"  # ... then end cleanly or drop the connection

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        return cls(
            status=status,
            headers={"content-type": "application/json", **(headers or {})},
            body=json.dumps(obj).encode(),
            **kw,
        )


Responder = Reply | Callable[[Recorded], Reply]


def word_chunks(text: str) -> list[str]:
    """`"a b c"` -> `["a", " b", " c"]`: stream parts that join back to the text."""
    return [word if i == 0 else " " + word for i, word in enumerate(text.split(" "))]


class ClientGone(Exception):
    """The client closed the connection while a reply was in progress."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients that hang up (timeouts, cancellations) are what these tests provoke: not an error
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        return None

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        record = Recorded(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            time.monotonic(),
        )
        reply = fake.reply_for(record)
        try:
            self._send(reply)
        except ClientGone:
            fake.note_disconnect()
            self.close_connection = True

    def _wait(self, seconds: float) -> None:
        """Sleep, but notice at once when the client disconnects."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.server.fake.stopping.is_set():
                raise ClientGone
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable:
                try:
                    peek = self.connection.recv(1, socket.MSG_PEEK)
                except (ConnectionResetError, OSError):
                    raise ClientGone from None
                if not peek:
                    raise ClientGone
                time.sleep(min(left, 0.01))

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise ClientGone from None

    def _send(self, reply: Reply) -> None:
        if reply.delay_s:
            self._wait(reply.delay_s)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks is None:
            self.send_header("content-length", str(len(reply.body)))
            try:
                self.end_headers()
            except OSError:
                raise ClientGone from None
            self._write(reply.body)
            return
        self.send_header("transfer-encoding", "chunked")
        try:
            self.end_headers()
        except OSError:
            raise ClientGone from None
        chunks = reply.chunks if reply.cut_after is None else reply.chunks[: reply.cut_after]
        for index, chunk in enumerate(chunks):
            if reply.chunk_delay_s or index in reply.pause_before:
                self._wait(reply.chunk_delay_s + reply.pause_before.get(index, 0.0))
            self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if reply.end == "reset":
            self.close_connection = True  # no terminating chunk: the client sees a broken body
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(b"0\r\n\r\n")


class FakeServer:
    """Start with `with FakeServer(...) as server:` or `start()`/`stop()`; `base_url` is where it
    listens. `check` runs first on every request and may answer instead of the script (the Bedrock
    fake verifies signatures there)."""

    def __init__(
        self,
        default: Responder | None = None,
        *,
        check: Callable[[Recorded], Reply | None] | None = None,
    ) -> None:
        self._default = default or Reply(404, body=b'{"error": "no reply scripted"}')
        self._check = check
        self._script: deque[Responder] = deque()
        self._lock = threading.Lock()
        self._disconnected = threading.Condition(self._lock)
        self.requests: list[Recorded] = []
        self.disconnects: list[float] = []
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> FakeServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -------------------------------------------------------------- scripting

    def script(self, *replies: Responder) -> None:
        """Queue replies: the next requests get them in order, then the default."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.disconnects.clear()

    def reply_for(self, record: Recorded) -> Reply:
        with self._lock:
            self.requests.append(record)
        if self._check is not None:
            early = self._check(record)
            if early is not None:
                return early
        with self._lock:
            responder = self._script.popleft() if self._script else self._default
        return responder(record) if callable(responder) else responder

    def note_disconnect(self) -> None:
        with self._disconnected:
            self.disconnects.append(time.monotonic())
            self._disconnected.notify_all()

    def wait_for_disconnect(self, timeout: float = 2.0) -> bool:
        """True once the client has dropped a reply in progress (within `timeout` seconds)."""
        with self._disconnected:
            return self._disconnected.wait_for(lambda: bool(self.disconnects), timeout)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)
