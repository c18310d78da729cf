"""Real receivers for notification tests: an SMTP server (aiosmtpd) and an HTTP server standing in
for webhook receivers, Twilio's Messages API and the Expo push API, each scriptable to fail, hang
or recover, and recording what arrived and when."""

from __future__ import annotations

import asyncio
import base64
import email
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(found: Callable[[], list[Any]], count: int, timeout_s: float, what: str) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        items = found()
        if len(items) >= count:
            return items
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(items)} of {count} {what} after {timeout_s}s")
        time.sleep(0.05)


# --- SMTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: float

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


class SmtpReceiver:
    """An SMTP server on 127.0.0.1. `failing` answers DATA with 451; `hang_s` holds the answer."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[ReceivedMail] = []
        self.failing = False
        self.hang_s = 0.0
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        if self.failing:
            return "451 4.3.0 Mail system temporarily unavailable"
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.messages.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message, time.monotonic())  # type: ignore[arg-type]
            )
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        return "250 2.0.0 OK"

    def to(self, address: str) -> list[ReceivedMail]:
        with self._lock:
            return [m for m in self.messages if address in m.rcpt_tos]

    def wait_for(self, address: str, *, count: int = 1, timeout_s: float = 30.0) -> list[ReceivedMail]:
        return _wait(lambda: self.to(address), count, timeout_s, f"emails to {address}")


# --- HTTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    name: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Route:
    script: list[int] = field(default_factory=list)
    default: int = 200
    hang_s: list[float] = field(default_factory=list)
    # What a webhook receiver answers instead of {"status": <code>}.
    answer: str | None = None


class HttpReceiver:
    """Webhook receivers at /hooks/<name>, Twilio at /2010-04-01/Accounts/<sid>/Messages.json and
    Expo at /--/api/v2/push/send. Each name answers its script of status codes, then its default."""

    TWILIO = "twilio"
    EXPO = "expo"

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._routes: dict[str, _Route] = defaultdict(_Route)
        self._routes[self.TWILIO].default = 201
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def hook_url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    def script(self, name: str, statuses: list[int], *, then: int = 200, answer: str | None = None) -> None:
        with self._lock:
            self._routes[name] = _Route(script=list(statuses), default=then, answer=answer)

    def hang_next(self, name: str, seconds: float) -> None:
        """The next request to `name` is recorded at once and answered only after `seconds`."""
        with self._lock:
            self._routes[name].hang_s.append(seconds)

    def received(self, name: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.name == name]

    def wait_for(self, name: str, *, count: int = 1, timeout_s: float = 30.0) -> list[ReceivedRequest]:
        return _wait(lambda: self.received(name), count, timeout_s, f"requests to {name}")

    def _next(self, name: str) -> tuple[int, float, str | None]:
        with self._lock:
            route = self._routes[name]
            status = route.script.pop(0) if route.script else route.default
            hang = route.hang_s.pop(0) if route.hang_s else 0.0
            return status, hang, route.answer

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's hook
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?", 1)[0]
                if path.startswith("/hooks/"):
                    name = path.removeprefix("/hooks/")
                elif path.startswith("/2010-04-01/Accounts/") and path.endswith("/Messages.json"):
                    name = receiver.TWILIO
                elif path == "/--/api/v2/push/send":
                    name = receiver.EXPO
                else:
                    name = "unknown"
                status, hang, scripted_answer = receiver._next(name)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(ReceivedRequest(name, path, headers, body, time.monotonic(), status))
                if hang:
                    time.sleep(hang)
                if name == receiver.TWILIO and status == 201:
                    answer = {"sid": "SM" + uuid.uuid4().hex, "status": "queued"}
                elif name == receiver.EXPO and status == 200:
                    answer = {"data": {"status": "ok", "id": str(uuid.uuid4())}}
                else:
                    answer = {"status": status}
                raw = json.dumps(answer).encode() if scripted_answer is None else scripted_answer.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender is gone (a killed worker): nothing to answer

        return Handler


def twilio_form(request: ReceivedRequest) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


def basic_auth(request: ReceivedRequest) -> tuple[str, str]:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    assert scheme == "Basic", request.headers
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


# --- Standard Webhooks, verified the receiver's way -------------------------------------------------


class BadSignature(AssertionError):
    pass


def verify_standard_webhook(
    *, secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300
) -> dict[str, Any]:
    """Verify a delivery as a receiver following the Standard Webhooks spec would; its JSON body."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise BadSignature(f"missing webhook-* headers: {headers}")
    if abs(time.time() - int(timestamp)) > tolerance_s:
        raise BadSignature(f"timestamp {timestamp} outside the tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    for candidate in signatures.split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return json.loads(body)
    raise BadSignature(f"no valid v1 signature in {signatures!r}")
