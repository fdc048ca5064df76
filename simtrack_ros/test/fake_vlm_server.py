"""A scripted OpenAI-compatible chat-completions server for the VLM annotator tests.

A real HTTP server (``http.server``, one thread per request) on 127.0.0.1 with a free port.
Each request takes the next :class:`Reply` of the script (then the default one): a chat
completion with the given message content, a status with headers and body, a delay first, or
a connection closed without any response. The server records every request (path, headers,
parsed body, start and end time) and the most requests it held at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from simtrack_ros.data.vlm_annotator import VLM_CLASSES


@dataclass(frozen=True)
class Reply:
    """What the server does with one request.

    ``content`` is sent as the assistant message of a chat completion unless ``body`` is given
    (sent as is); ``drop`` closes the connection without a response (after ``delay_s``).
    """

    status: int = 200
    content: Optional[str] = None
    body: Optional[bytes] = None
    headers: Tuple[Tuple[str, str], ...] = ()
    delay_s: float = 0.0
    drop: bool = False


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    headers: Dict[str, str]
    body: Any
    start: float
    end: float = float('nan')


def answer_text(on: Sequence[str] = (), keys: Sequence[str] = VLM_CLASSES) -> str:
    """Make a valid answer: each class of ``keys``, flag 1 (confidence 0.9) if in ``on``."""
    return json.dumps({key: {'flag': int(key in on), 'confidence': 0.9 if key in on else 0.1}
                       for key in keys})


def completion(content: Optional[str]) -> bytes:
    """Make a chat-completions response body carrying ``content``."""
    return json.dumps({
        'id': 'chatcmpl-test', 'object': 'chat.completion', 'created': 0, 'model': 'fake',
        'choices': [{'index': 0, 'finish_reason': 'stop',
                     'message': {'role': 'assistant', 'content': content}}]}).encode()


@dataclass
class _State:
    replies: List[Reply]
    default: Reply
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    requests: List[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: '_Server'

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        """Keep test output quiet."""

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        seen = Seen(self.path, dict(self.headers.items()), body, time.monotonic())
        with state.lock:
            state.requests.append(seen)
            reply = state.replies.pop(0) if state.replies else state.default
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._respond(reply)
        except OSError:
            pass  # the client gave up (timeout) or went away
        finally:
            with state.lock:
                state.in_flight -= 1
                seen.end = time.monotonic()

    def _respond(self, reply: Reply) -> None:
        if reply.delay_s and self.server.state.stopping.wait(reply.delay_s):
            return
        if reply.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = reply.body if reply.body is not None else completion(reply.content)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class FakeVlmServer:
    """Context manager running the scripted server; ``url`` is its OpenAI base URL."""

    def __init__(self, replies: Sequence[Reply] = (),
                 default: Reply = Reply(content=answer_text())) -> None:
        self._state = _State(list(replies), default)
        self._server = _Server(('127.0.0.1', 0), _Handler)
        self._server.state = self._state
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={'poll_interval': 0.05}, daemon=True)

    def __enter__(self) -> 'FakeVlmServer':
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self._server.server_address[1]}/v1'

    @property
    def requests(self) -> List[Seen]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def max_in_flight(self) -> int:
        with self._state.lock:
            return self._state.max_in_flight
