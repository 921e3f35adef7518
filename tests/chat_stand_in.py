"""A local server speaking the OpenAI-compatible chat-completions protocol, for the AI judge's tests.

It listens on 127.0.0.1 (stdlib ``ThreadingHTTPServer`` in a thread), checks the shape of every request
(``POST /v1/chat/completions``, the ``Authorization`` header, a system and a user message, the user's text
part and PNG ``image_url`` data URLs, a strict ``json_schema`` response format) and records what is wrong
in ``problems``. It answers by script: a reply of ``queue`` (first in, first out) while there is one, else
the first ``plan`` entry whose key is in the request's text (its list consumed in turn, the last reply
repeating), else ``default``. A reply is a function of the request body giving (status, headers, body,
delay in seconds). A good answer says every asked event is present, in order, the asked number of times
(read from the prompt's "..., N times." lines).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], tuple[int, dict[str, str], bytes, float]]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
USAGE = {"prompt_tokens": 1000, "completion_tokens": 50}


def user_text(body: dict[str, Any]) -> str:
    """The text part of the request's user message ("" when there is none)."""
    for message in body.get("messages", []):
        if message.get("role") == "user" and isinstance(message.get("content"), list):
            return "".join(p.get("text", "") for p in message["content"] if p.get("type") == "text")
    return ""


def truthful_answer(body: dict[str, Any]) -> dict[str, Any]:
    """Every asked event present, after the previous one, the asked number of times (1 if not asked)."""
    lines = re.findall(r"^(\d+)\. The person (.*)\.$", user_text(body), flags=re.MULTILINE)
    events = []
    for number, text in lines:
        times = re.search(r", (\d+) times?$", text)
        events.append({"event": int(number), "present": True, "times": int(times.group(1)) if times else None,
                       "after_previous": None if number == "1" else True, "reason": "seen"})  # fmt: skip
    return {"events": events, "reason": "all there"}


def completion(content: str, usage: dict[str, int] = USAGE) -> bytes:
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "model": "stand-in",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content, "refusal": None}}],
        "usage": {**usage, "total_tokens": sum(usage.values())},
    }).encode()  # fmt: skip


def answer(make: Callable[[dict[str, Any]], Any] = truthful_answer, delay: float = 0.0) -> Reply:
    """A 200 whose message content is ``make(body)`` as JSON."""
    return lambda body: (200, {}, completion(json.dumps(make(body))), delay)


def raw(content: str) -> Reply:
    """A 200 whose message content is ``content`` as it is (e.g. malformed JSON)."""
    return lambda body: (200, {}, completion(content), 0.0)


def status(code: int, retry_after: str | None = None, text: str = '{"error": {"message": "busy"}}') -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return lambda body: (code, headers, text.encode(), 0.0)


class ChatStandIn:
    """The server (module docstring); ``url`` is the API root to pass as ``base_url``."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.queue: list[Reply] = []
        self.plan: dict[str, list[Reply]] = {}
        self.default: Reply = answer()
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                stand_in.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def check(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        """Record what is wrong with a request's shape."""
        wrong = self.problems.append
        if handler.path != "/v1/chat/completions":
            wrong(f"path {handler.path}")
        expected = f"Bearer {self.key}" if self.key else None
        if handler.headers.get("Authorization") != expected:
            wrong("Authorization header missing or wrong")
        if not isinstance(body, dict) or not body.get("model"):
            wrong("no model")
            return
        roles = [m.get("role") for m in body.get("messages", [])]
        if roles != ["system", "user"]:
            wrong(f"roles {roles}")
        parts = next((m["content"] for m in body["messages"] if m.get("role") == "user"), [])
        images = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
        if not user_text(body) or not images:
            wrong("the user message needs a text part and image parts")
        for url in images:
            prefix = "data:image/png;base64,"
            if not url.startswith(prefix) or not base64.b64decode(url[len(prefix) :]).startswith(
                PNG_SIGNATURE
            ):
                wrong("an image part is not a PNG data URL")
        form = body.get("response_format", {})
        schema = form.get("json_schema", {})
        if form.get("type") != "json_schema" or not schema.get("strict") or "schema" not in schema:
            wrong(f"response_format {form!r:.80}")

    def pick(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            if self.queue:
                return self.queue.pop(0)
            text = user_text(body)
            for key, replies in self.plan.items():
                if key in text:
                    return replies.pop(0) if len(replies) > 1 else replies[0]
        return self.default

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            length = int(handler.headers.get("Content-Length", 0))
            try:
                body = json.loads(handler.rfile.read(length))
            except ValueError:
                body = None
            self.check(handler, body)
            with self.lock:
                self.requests.append(body)
            code, headers, payload, delay = self.pick(body or {})(body or {})
            time.sleep(delay)
            handler.send_response(code)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass
        finally:
            with self.lock:
                self.in_flight -= 1
