"""VLM annotator: challenge flags from a vision-language model behind an OpenAI-compatible API.

For the challenges a formula cannot judge well (:data:`VLM_CLASSES`) the annotator sends the
template crop and the frame's search-region crop (the target box drawn on it) as base64 JPEG
data URLs in one user message to any OpenAI-compatible chat-completions endpoint (vLLM, Ollama,
llama.cpp server), asks for strict JSON (``response_format`` JSON mode where the server has it;
a reply wrapped in a Markdown code fence is accepted) and validates the answer against the
schema. The result is the annotation record's ``vlm_response`` (canonical class names) or an
error: nothing is invented, and without an endpoint there is no annotator at all (the record's
VLM fields stay null).

Transient failures (timeouts, connection errors, a dropped connection, HTTP 429 and 5xx) are
retried with exponential back-off and jitter, honouring ``Retry-After``; other 4xx statuses and
invalid answers are not retried. :meth:`VlmAnnotator.annotate_many` keeps up to ``concurrency``
requests in flight (serving engines batch them) and is stopped by :meth:`VlmAnnotator.close`,
which cancels queued work and aborts requests in flight. HTTP is the standard library's
``http.client``; the API key is read from the environment variable the config names and is
never logged.
"""
from __future__ import annotations

import base64
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
import http.client
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Set, Tuple
from urllib.parse import urlsplit

import cv2
import numpy as np

from simtrack_ros.challenges import canonical_name, DEFAULT_PRIORITY
from simtrack_ros.tracking.crop import Box, crop_and_resize, crop_window, validate_box

#: The classes the VLM judges, in the design guide's order (the head of DEFAULT_PRIORITY).
VLM_CLASSES: Tuple[str, ...] = DEFAULT_PRIORITY[:6]

#: What each class means, as the prompt states it.
CLASS_DEFINITIONS: Dict[str, str] = {
    'motion_blur': 'the target or its surroundings are smeared by motion of the camera or '
                   'of the target',
    'illumination_change': 'the light on the target clearly differs from the template '
                           '(sun glare, shadow, cloud, dusk)',
    'variance_in_appearance': 'the target itself looks different from the template: turned, '
                              'seen from another side or deformed (not just lit differently '
                              'or resized)',
    'partial_visibility': 'part of the target lies outside the camera image (in the black '
                          'area or cut by the image border)',
    'occlusion': 'part or all of the target is hidden behind something in front of it '
                 '(another vessel, a wave, a structure)',
    'background_clutter': 'the surroundings hold similar-looking objects or dense texture '
                          '(other vessels, whitecaps, harbour structures) that could be '
                          'confused with the target',
}

#: The one text part of the request; the two images follow it.
PROMPT = (
    'You label frames of a visual object tracking dataset (vessels at sea).\n'
    'Image 1 is the template: the target as it looked when tracking started, in the centre.\n'
    "Image 2 is the search region of the current frame around the target; the target's box is "
    'drawn in green. Black areas lie outside the camera image.\n'
    'For each challenge below decide whether it affects the target in image 2:\n'
    + ''.join(f'- {name}: {CLASS_DEFINITIONS[name]}\n' for name in VLM_CLASSES)
    + 'Answer with one JSON object and nothing else. It has exactly the keys '
    + ', '.join(VLM_CLASSES)
    + ', each mapped to {"flag": 0 or 1, "confidence": c} where c is a number from 0 to 1, '
    'the probability that the challenge is present.')

#: Box colour drawn on the search crop (RGB green).
BOX_COLOUR = (0, 255, 0)
CANCELLED = 'cancelled'
_CHAT_PATH = '/chat/completions'
_FENCE = re.compile(r'^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```$', re.DOTALL)
_SNIPPET = 200
_END = object()
_LOG = logging.getLogger(__name__)

VlmResponse = Dict[str, Dict[str, Any]]


class InvalidAnswer(ValueError):
    """The model's answer is not the JSON object the prompt asks for."""


@dataclass(frozen=True)
class VlmConfig:
    """Endpoint, retry, concurrency and crop settings of :class:`VlmAnnotator`.

    Attributes:
        url: the server's OpenAI base URL (``http://localhost:8000/v1``) or the full
            ``.../chat/completions`` URL; http or https.
        model: model name as the server knows it (vLLM: the served model; Ollama: the tag).
        api_key_env: name of the environment variable holding the API key (sent as
            ``Authorization: Bearer``); None for servers without a key.
        timeout_s: limit for connecting and for each wait for data, per attempt.
        max_retries: retries after the first attempt (transient failures only).
        backoff_s: first back-off; attempt n waits ``backoff_s * 2**(n-1)``, capped at
            ``max_backoff_s``, with jitter (half fixed, half uniform random).
        max_backoff_s: longest wait between attempts, also the cap of ``Retry-After``.
        concurrency: requests in flight at most (:meth:`VlmAnnotator.annotate_many`).
        max_tokens: answer length limit.
        temperature: sampling temperature (0: greedy).
        json_mode: send ``response_format: {"type": "json_object"}``.
        search_factor, search_size: search-region crop side / target scale, and its pixels.
        template_factor, template_size: the same for the template crop.
        jpeg_quality: JPEG quality of the images sent (1-100).
    """

    url: str
    model: str
    api_key_env: Optional[str] = None
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    concurrency: int = 8
    max_tokens: int = 256
    temperature: float = 0.0
    json_mode: bool = True
    search_factor: float = 4.0
    search_size: int = 448
    template_factor: float = 2.0
    template_size: int = 224
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ValueError(f'url must be an http(s) URL with a host, got {self.url!r}')
        if not isinstance(self.model, str) or not self.model:
            raise ValueError('model must be a non-empty string')
        if self.api_key_env is not None and not (isinstance(self.api_key_env, str)
                                                 and self.api_key_env):
            raise ValueError('api_key_env must be None or an environment variable name')
        for name in ('timeout_s', 'search_factor', 'template_factor'):
            _check_number(name, getattr(self, name), positive=True)
        for name in ('backoff_s', 'max_backoff_s', 'temperature'):
            _check_number(name, getattr(self, name), positive=False)
        for name, low in (('max_retries', 0), ('concurrency', 1), ('max_tokens', 1),
                          ('search_size', 16), ('template_size', 16), ('jpeg_quality', 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f'{name} must be an int >= {low}, got {value!r}')
        if self.jpeg_quality > 100:
            raise ValueError(f'jpeg_quality must be at most 100, got {self.jpeg_quality}')

    @property
    def endpoint(self) -> str:
        """The chat-completions URL (``url`` with ``/chat/completions`` appended if missing)."""
        url = self.url.rstrip('/')
        return url if url.endswith(_CHAT_PATH) else url + _CHAT_PATH


def _check_number(name: str, value: Any, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value < 0 or (positive and value == 0):
        raise ValueError(f'{name} must be a {"positive" if positive else "non-negative"} '
                         f'number, got {value!r}')


@dataclass(frozen=True)
class VlmResult:
    """One frame's outcome: ``response`` (the record's ``vlm_response``) or ``error``.

    ``attempts`` counts HTTP attempts (0: the input was rejected before any request);
    ``latency_s`` is the wall time of all attempts and back-off waits.
    """

    response: Optional[VlmResponse]
    error: Optional[str]
    attempts: int
    latency_s: float


@dataclass(frozen=True, eq=False)
class VlmItem:
    """One frame to annotate; ``key`` is the caller's (e.g. the frame index), passed through."""

    frame: np.ndarray
    box: Sequence[float]
    template_frame: np.ndarray
    template_box: Sequence[float]
    key: Any = None


def parse_answer(text: Any) -> VlmResponse:
    """Validate the model's answer; return it with canonical class names in VLM_CLASSES order.

    Accepts the bare JSON object or one wrapped in a Markdown code fence; class keys may be
    canonical names or the design guide's keys (``illu_change``, ``variance_appear``). Raises
    :class:`InvalidAnswer` for anything else: not JSON, NaN/Infinity, a class missing, unknown,
    repeated or outside VLM_CLASSES, a value other than ``{"flag": 0|1, "confidence": 0..1}``.
    """
    if not isinstance(text, str):
        raise InvalidAnswer(f'expected the answer as text, got {type(text).__name__}')
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    try:
        answer = json.loads(fenced.group(1) if fenced else stripped,
                            parse_constant=_reject_constant)
    except ValueError as exc:
        raise InvalidAnswer(f'not JSON ({exc}): {_snippet(stripped)}') from None
    if not isinstance(answer, dict):
        raise InvalidAnswer(f'expected a JSON object, got {type(answer).__name__}')
    out: VlmResponse = {}
    for key, value in answer.items():
        try:
            name = canonical_name(key)
        except ValueError:
            raise InvalidAnswer(f'unknown class {key!r}') from None
        if name not in VLM_CLASSES:
            raise InvalidAnswer(f'class {key!r} was not asked for')
        if name in out:
            raise InvalidAnswer(f'class {name!r} given twice')
        out[name] = _judgement(name, value)
    missing = [name for name in VLM_CLASSES if name not in out]
    if missing:
        raise InvalidAnswer(f'missing classes {missing}')
    return {name: out[name] for name in VLM_CLASSES}


def _reject_constant(name: str) -> Any:
    raise ValueError(f'{name} is not allowed')


def _judgement(name: str, value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict) or set(value) != {'flag', 'confidence'}:
        raise InvalidAnswer(f'{name}: expected {{"flag", "confidence"}}, got {value!r}')
    flag, confidence = value['flag'], value['confidence']
    if isinstance(flag, bool) or not isinstance(flag, int) or flag not in (0, 1):
        raise InvalidAnswer(f'{name}.flag: expected 0 or 1, got {flag!r}')
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not (
            0.0 <= confidence <= 1.0):
        raise InvalidAnswer(f'{name}.confidence: expected a number in [0, 1], got {confidence!r}')
    return {'flag': flag, 'confidence': float(confidence)}


def parse_completion(body: bytes) -> VlmResponse:
    """Validate a chat-completions response body; the first choice's message is the answer."""
    try:
        completion = json.loads(body)
        content = completion['choices'][0]['message']['content']
    except (ValueError, KeyError, IndexError, TypeError):
        raise InvalidAnswer('not a chat completion: '
                            + _snippet(body.decode('utf-8', 'replace'))) from None
    return parse_answer(content)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date); None if unusable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (
                time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _snippet(text: str) -> str:
    text = ' '.join(text.split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + '...'


def jpeg_data_url(rgb: np.ndarray, quality: int) -> str:
    """Encode an RGB uint8 image as a ``data:image/jpeg;base64,...`` URL."""
    ok, encoded = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError('JPEG encoding failed')
    return 'data:image/jpeg;base64,' + base64.b64encode(encoded.tobytes()).decode('ascii')


def _checked_box(frame: Any, box: Sequence[float], what: str) -> Box:
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
            and frame.shape[2] == 3):
        raise ValueError(f'{what} must be an RGB uint8 H x W x 3 array, got '
                         f'{getattr(frame, "shape", type(frame).__name__)}')
    return validate_box(box, frame.shape[0], frame.shape[1])


def search_crop(frame: np.ndarray, box: Sequence[float], factor: float,
                size: int) -> np.ndarray:
    """Cut the ``size`` x ``size`` search region around ``box``, the box outlined in green."""
    x, y, w, h = _checked_box(frame, box, 'frame')
    window = crop_window((x, y, w, h), factor)
    crop = crop_and_resize(frame, window, size)
    scale = size / window[2]
    thickness = max(1, size // 224)
    left, top = (x - window[0]) * scale, (y - window[1]) * scale
    # The outline lies just outside the box, so the target's own pixels stay untouched.
    cv2.rectangle(crop, (math.floor(left) - thickness, math.floor(top) - thickness),
                  (math.ceil(left + w * scale) + thickness - 1,
                   math.ceil(top + h * scale) + thickness - 1), BOX_COLOUR, thickness)
    return crop


def template_crop(frame: np.ndarray, box: Sequence[float], factor: float,
                  size: int) -> np.ndarray:
    """Cut the ``size`` x ``size`` template crop around ``box`` (as the tracker cuts it)."""
    checked = _checked_box(frame, box, 'template_frame')
    return crop_and_resize(frame, crop_window(checked, factor), size)


class _Cancelled(Exception):
    """The annotator was closed while a request was being made."""


class VlmAnnotator:
    """Client of one OpenAI-compatible endpoint; see the module docstring.

    Raises ValueError at construction when ``config.api_key_env`` names a variable that is not
    set. Use as a context manager, or call :meth:`close`, to stop work and free the threads.
    """

    def __init__(self, config: VlmConfig) -> None:
        self.config = config
        self._api_key = _read_api_key(config.api_key_env)
        parts = urlsplit(config.endpoint)
        self._https = parts.scheme == 'https'
        self._host, self._port = parts.hostname, parts.port
        self._path = parts.path + (f'?{parts.query}' if parts.query else '')
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: Set[http.client.HTTPConnection] = set()
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency,
                                        thread_name_prefix='vlm')
        self._random = random.Random()

    def __enter__(self) -> 'VlmAnnotator':
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f'VlmAnnotator({self.config.endpoint!r}, model={self.config.model!r})'

    def close(self) -> None:
        """Stop: queued work is cancelled, requests in flight are aborted; idempotent."""
        with self._lock:
            self._stop.set()
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except (AttributeError, OSError):
                pass
        self._pool.shutdown(wait=True, cancel_futures=True)

    def request_body(self, frame: np.ndarray, box: Sequence[float], template_frame: np.ndarray,
                     template_box: Sequence[float]) -> Dict[str, Any]:
        """Build the chat-completions request for one frame; ValueError for an unusable input."""
        cfg = self.config
        images = (template_crop(template_frame, template_box, cfg.template_factor,
                                cfg.template_size),
                  search_crop(frame, box, cfg.search_factor, cfg.search_size))
        content = [{'type': 'text', 'text': PROMPT}] + [
            {'type': 'image_url', 'image_url': {'url': jpeg_data_url(image, cfg.jpeg_quality)}}
            for image in images]
        body: Dict[str, Any] = {
            'model': cfg.model, 'messages': [{'role': 'user', 'content': content}],
            'max_tokens': cfg.max_tokens, 'temperature': cfg.temperature, 'stream': False}
        if cfg.json_mode:
            body['response_format'] = {'type': 'json_object'}
        return body

    def annotate(self, frame: np.ndarray, box: Sequence[float], template_frame: np.ndarray,
                 template_box: Sequence[float]) -> VlmResult:
        """Judge one frame (blocking, with retries); never raises for server or model faults."""
        start = time.monotonic()
        try:
            data = json.dumps(self.request_body(frame, box, template_frame, template_box))
        except (ValueError, TypeError, cv2.error) as exc:
            return VlmResult(None, f'invalid input: {exc}', 0, 0.0)
        response, error, attempts = self._post_with_retries(data.encode('utf-8'))
        return VlmResult(response, error, attempts, time.monotonic() - start)

    def annotate_many(self, items: Iterable[VlmItem]) -> Iterator[Tuple[VlmItem, VlmResult]]:
        """Judge many frames, ``concurrency`` requests in flight; yields in COMPLETION order.

        ``items`` is consumed lazily (at most ``2 * concurrency`` frames held at once). Each
        item is yielded once with its result, unless the annotator is closed first: then the
        iterator ends and unfinished items are not yielded (so nothing is recorded for them).
        Closing the iterator early cancels the items it queued but had not started.
        """
        source = iter(items)
        pending: Dict[Future, VlmItem] = {}
        window = 2 * self.config.concurrency
        try:
            while True:
                while len(pending) < window:
                    item = next(source, _END)
                    if item is _END:
                        break
                    future = self._submit(item)
                    if future is None:
                        return
                    pending[future] = item
                if not pending or self._stop.is_set():
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)
                    if future.cancelled() or self._stop.is_set():
                        return
                    yield item, future.result()
        finally:
            for future in pending:
                future.cancel()

    def _submit(self, item: VlmItem) -> Optional[Future]:
        with self._lock:
            if self._stop.is_set():
                return None
            return self._pool.submit(self.annotate, item.frame, item.box, item.template_frame,
                                     item.template_box)

    def _post_with_retries(self, data: bytes) -> Tuple[Optional[VlmResponse], Optional[str], int]:
        """Post with retries; return ``(response, error, attempts)``."""
        attempt = 0
        while True:
            attempt += 1
            retry_after = None
            try:
                status, headers, body = self._post(data)
            except _Cancelled:
                return None, CANCELLED, attempt
            except (OSError, http.client.HTTPException) as exc:
                if self._stop.is_set():
                    return None, CANCELLED, attempt
                failure = _describe(exc)
            else:
                if 200 <= status < 300:
                    try:
                        return parse_completion(body), None, attempt
                    except InvalidAnswer as exc:
                        return None, f'invalid answer: {exc}', attempt
                failure = f'HTTP {status}: {_snippet(body.decode("utf-8", "replace"))}'
                if status != 429 and status < 500:
                    return None, failure, attempt
                retry_after = parse_retry_after(headers.get('Retry-After'))
            if attempt > self.config.max_retries:
                return None, f'{failure} (gave up after {attempt} attempts)', attempt
            delay = self._backoff(attempt, retry_after)
            _LOG.warning('VLM request attempt %d failed (%s); retrying in %.2f s', attempt,
                         failure, delay)
            if self._stop.wait(delay):
                return None, CANCELLED, attempt

    def _backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        cfg = self.config
        base = min(cfg.max_backoff_s, cfg.backoff_s * 2.0 ** (attempt - 1))
        delay = base / 2 + self._random.uniform(0.0, base / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, cfg.max_backoff_s))
        return delay

    def _post(self, data: bytes) -> Tuple[int, http.client.HTTPMessage, bytes]:
        """Make one HTTP attempt, the connection registered so :meth:`close` can abort it."""
        connection_class = (http.client.HTTPSConnection if self._https
                            else http.client.HTTPConnection)
        connection = connection_class(self._host, self._port, timeout=self.config.timeout_s)
        headers = {'Content-Type': 'application/json', 'Accept': 'application/json'}
        if self._api_key:
            headers['Authorization'] = f'Bearer {self._api_key}'
        try:
            connection.connect()
            with self._lock:
                if self._stop.is_set():
                    raise _Cancelled()
                self._connections.add(connection)
            connection.request('POST', self._path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f'timeout ({str(exc) or "timed out"})'
    return f'{type(exc).__name__}: {exc}'


def _read_api_key(name: Optional[str]) -> Optional[str]:
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise ValueError(f'environment variable {name} (VlmConfig.api_key_env) is not set or '
                         'is empty')
    return value
