"""VLM annotator against a real local HTTP server that answers like an OpenAI-compatible one.

Valid, fenced and invalid answers; a slow answer past the timeout; HTTP 429 with Retry-After,
500 and 400; a dropped connection; a refused connection; concurrency above one and bounded;
the API key from the environment; the images as decodable JPEG data URLs; stopping.
"""
from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from typing import Any, Dict, List, Tuple

import cv2
from fake_vlm_server import answer_text, FakeVlmServer, Reply
import numpy as np
import pytest

from simtrack_ros.data.vlm_annotator import (
    CANCELLED, InvalidAnswer, parse_answer, parse_retry_after, VLM_CLASSES, VlmAnnotator,
    VlmConfig, VlmItem)

WIDTH, HEIGHT = 320, 240
BOX = (140.0, 105.0, 40.0, 30.0)
RED = (230, 20, 20)
BLUE = (20, 20, 230)
KEY_ENV = 'SIMTRACK_TEST_VLM_KEY'
SECRET = 'sk-test-3f9c1e'


def frame(seed: int = 0, colour: Tuple[int, int, int] = RED) -> np.ndarray:
    """Make a noisy dark RGB frame with a target of ``colour`` filling BOX."""
    rgb = np.random.default_rng(seed).integers(0, 90, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    x, y, w, h = (int(v) for v in BOX)
    rgb[y:y + h, x:x + w] = colour
    return rgb


def config(url: str, **overrides: Any) -> VlmConfig:
    """Fast test settings: short timeouts and back-off."""
    options: Dict[str, Any] = {'model': 'qwen2-vl-test', 'timeout_s': 0.3, 'max_retries': 2,
                               'backoff_s': 0.01, 'max_backoff_s': 2.0, 'concurrency': 2}
    options.update(overrides)
    return VlmConfig(url, **options)


def annotate_once(server: FakeVlmServer, suffix: str = '', **overrides: Any):
    with VlmAnnotator(config(server.url + suffix, **overrides)) as annotator:
        return annotator.annotate(frame(), BOX, frame(1), BOX)


def decode_data_url(url: str) -> np.ndarray:
    prefix = 'data:image/jpeg;base64,'
    assert url.startswith(prefix)
    image = cv2.imdecode(np.frombuffer(base64.b64decode(url[len(prefix):]), np.uint8),
                         cv2.IMREAD_COLOR)
    assert image is not None, 'not a decodable JPEG'
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def test_valid_answer_request_format_and_api_key(monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    guide_keys = {'motion_blur': {'flag': 1, 'confidence': 0.8},
                  'illu_change': {'flag': 0, 'confidence': 0.25},
                  'variance_appear': {'flag': 0, 'confidence': 0},
                  'partial_visibility': {'flag': 0, 'confidence': 0.1},
                  'background_clutter': {'flag': 1, 'confidence': 1},
                  'occlusion': {'flag': 0, 'confidence': 0.3}}
    caplog.set_level(logging.DEBUG)
    with FakeVlmServer([Reply(status=503), Reply(content=json.dumps(guide_keys))]) as server:
        result = annotate_once(server, api_key_env=KEY_ENV, max_tokens=77)
        seen = server.requests
    assert result.error is None and result.attempts == 2
    assert result.response == {
        'motion_blur': {'flag': 1, 'confidence': 0.8},
        'illumination_change': {'flag': 0, 'confidence': 0.25},
        'variance_in_appearance': {'flag': 0, 'confidence': 0.0},
        'partial_visibility': {'flag': 0, 'confidence': 0.1},
        'background_clutter': {'flag': 1, 'confidence': 1.0},
        'occlusion': {'flag': 0, 'confidence': 0.3}}
    assert list(result.response) == list(VLM_CLASSES)
    assert result.latency_s > 0
    request = seen[-1]
    assert request.path == '/v1/chat/completions'
    assert request.headers['Authorization'] == f'Bearer {SECRET}'
    body = request.body
    assert body['model'] == 'qwen2-vl-test'
    assert body['max_tokens'] == 77 and body['temperature'] == 0
    assert body['response_format'] == {'type': 'json_object'}
    (message,) = body['messages']
    assert message['role'] == 'user'
    text, template, search = message['content']
    assert text['type'] == 'text' and all(name in text['text'] for name in VLM_CLASSES)
    template_rgb = decode_data_url(template['image_url']['url'])
    search_rgb = decode_data_url(search['image_url']['url'])
    assert template_rgb.shape == (224, 224, 3) and search_rgb.shape == (448, 448, 3)
    # Template (factor 2) and search region (factor 4) are centred on the red target.
    assert np.abs(template_rgb[112, 112].astype(int) - RED).max() < 40
    assert np.abs(search_rgb[224, 224].astype(int) - RED).max() < 40
    # The box outline is drawn just outside the target: 40 px * (448 / 140) = 128 px wide.
    left_edge = search_rgb[200:250, 224 - 64 - 2]
    assert (left_edge[:, 1] > 200).all() and (left_edge[:, 0] < 60).all()
    # The key never shows in logs (a retry was logged) or in the annotator's repr.
    assert 'retrying' in caplog.text and SECRET not in caplog.text
    assert SECRET not in repr(VlmAnnotator(config(server.url, api_key_env=KEY_ENV)))


def test_full_endpoint_url_without_key_or_json_mode():
    with FakeVlmServer() as server:
        result = annotate_once(server, '/chat/completions/', json_mode=False)
        (request,) = server.requests
    assert result.response is not None
    assert request.path == '/v1/chat/completions'
    assert 'Authorization' not in request.headers
    assert 'response_format' not in request.body


def test_fenced_json_is_accepted():
    fenced = '```json\n' + answer_text(on=('occlusion',)) + '\n```'
    with FakeVlmServer([Reply(content=fenced)]) as server:
        result = annotate_once(server)
    assert result.error is None
    assert result.response['occlusion'] == {'flag': 1, 'confidence': 0.9}
    assert parse_answer('```\n' + answer_text() + '```')['motion_blur']['flag'] == 0


def bad_answers() -> List[Any]:
    valid = json.loads(answer_text())

    def changed(**items: Any) -> str:
        return json.dumps({**valid, **items})
    missing = dict(valid)
    del missing['occlusion']
    return [
        pytest.param('The target is blurred.', 'not JSON', id='prose'),
        pytest.param('```json\n{"motion_blur": \n```', 'not JSON', id='broken-fence'),
        pytest.param('[1, 2]', 'expected a JSON object', id='list'),
        pytest.param(json.dumps(missing), 'missing classes', id='missing-class'),
        pytest.param(changed(fog={'flag': 1, 'confidence': 1}), 'unknown class', id='unknown'),
        pytest.param(changed(low_resolution={'flag': 1, 'confidence': 1}), 'not asked for',
                     id='class-not-asked'),
        pytest.param(changed(illu_change={'flag': 1, 'confidence': 1}), 'given twice',
                     id='guide-key-twice'),
        pytest.param(changed(occlusion={'flag': 2, 'confidence': 1}), 'flag', id='flag-2'),
        pytest.param(changed(occlusion={'flag': '1', 'confidence': 1}), 'flag', id='flag-str'),
        pytest.param(changed(occlusion={'flag': True, 'confidence': 1}), 'flag', id='flag-bool'),
        pytest.param(changed(occlusion={'flag': 1, 'confidence': 1.5}), 'confidence',
                     id='confidence-range'),
        pytest.param(changed(occlusion={'flag': 1, 'confidence': '0.5'}), 'confidence',
                     id='confidence-str'),
        pytest.param(changed(occlusion={'flag': 1}), 'expected {"flag", "confidence"}',
                     id='no-confidence'),
        pytest.param(changed(occlusion={'flag': 1, 'confidence': 1, 'why': 'x'}),
                     'expected {"flag", "confidence"}', id='extra-key'),
        pytest.param(changed(occlusion=1), 'expected {"flag", "confidence"}', id='bare-flag'),
        pytest.param(answer_text().replace('0.1', 'NaN'), 'not JSON', id='nan'),
        pytest.param(None, 'expected the answer as text', id='null-content'),
    ]


@pytest.mark.parametrize('text,message', bad_answers())
def test_schema_violations_are_rejected(text, message):
    with pytest.raises(InvalidAnswer, match=message.replace('{', r'\{')):
        parse_answer(text)


@pytest.mark.parametrize('reply', [
    Reply(content='no JSON here'),
    Reply(content=answer_text(keys=VLM_CLASSES[:-1])),
    Reply(body=b'<html>proxy error page</html>'),
], ids=['prose', 'missing-class', 'not-a-completion'])
def test_invalid_answer_is_an_error_without_retry(reply):
    with FakeVlmServer([reply]) as server:
        result = annotate_once(server)
        assert len(server.requests) == 1
    assert result.response is None and result.attempts == 1
    assert result.error.startswith('invalid answer:')


def test_slow_answer_times_out_then_succeeds_on_retry():
    with FakeVlmServer([Reply(content=answer_text(), delay_s=1.5)]) as server:
        result = annotate_once(server)
        assert len(server.requests) == 2
    assert result.error is None and result.attempts == 2
    assert 0.3 <= result.latency_s < 1.2


def test_permanent_timeout_gives_error_and_no_response():
    with FakeVlmServer(default=Reply(content=answer_text(), delay_s=2.0)) as server:
        result = annotate_once(server, max_retries=1)
        assert len(server.requests) == 2
    assert result.response is None and result.attempts == 2
    assert 'timeout' in result.error and 'gave up after 2 attempts' in result.error
    assert 0.6 <= result.latency_s < 1.5


def test_http_429_honours_retry_after():
    with FakeVlmServer([Reply(status=429, headers=(('Retry-After', '1'),),
                              body=b'{"error": "busy"}')]) as server:
        result = annotate_once(server)
        first, second = server.requests
    assert result.error is None and result.attempts == 2
    assert second.start - first.start >= 0.95


def test_http_500_is_retried_until_success():
    replies = [Reply(status=500, body=b'boom'), Reply(status=502, body=b'bad gateway')]
    with FakeVlmServer(replies) as server:
        result = annotate_once(server)
        assert len(server.requests) == 3
    assert result.error is None and result.attempts == 3


def test_http_500_gives_up_after_max_retries():
    with FakeVlmServer(default=Reply(status=500, body=b'engine died')) as server:
        result = annotate_once(server, max_retries=1)
        assert len(server.requests) == 2
    assert result.response is None
    assert result.error == 'HTTP 500: engine died (gave up after 2 attempts)'


@pytest.mark.parametrize('status', [400, 401, 404, 422])
def test_client_errors_are_not_retried(status):
    with FakeVlmServer([Reply(status=status, body=b'{"error": "bad model"}')]) as server:
        result = annotate_once(server)
        assert len(server.requests) == 1
    assert result.response is None and result.attempts == 1
    assert result.error.startswith(f'HTTP {status}: ') and 'bad model' in result.error


def test_dropped_connection_is_retried():
    with FakeVlmServer([Reply(drop=True)]) as server:
        result = annotate_once(server)
        assert len(server.requests) == 2
    assert result.error is None and result.attempts == 2


def test_refused_connection_is_an_error_after_retries():
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    with VlmAnnotator(config(f'http://127.0.0.1:{port}/v1', max_retries=2)) as annotator:
        result = annotator.annotate(frame(), BOX, frame(), BOX)
    assert result.response is None and result.attempts == 3
    assert 'ConnectionRefusedError' in result.error


def test_invalid_input_is_rejected_before_any_request():
    with FakeVlmServer() as server:
        with VlmAnnotator(config(server.url)) as annotator:
            outside = annotator.annotate(frame(), (500.0, 10.0, 20.0, 20.0), frame(), BOX)
            gray = annotator.annotate(frame()[..., 0], BOX, frame(), BOX)
        assert server.requests == []
    assert outside.attempts == 0 and 'outside' in outside.error
    assert gray.attempts == 0 and gray.error.startswith('invalid input: frame must be an RGB')


def test_annotate_many_runs_requests_concurrently_within_the_limit():
    items = [VlmItem(frame(i), BOX, frame(0), BOX, key=i) for i in range(8)]
    with FakeVlmServer(default=Reply(content=answer_text(), delay_s=0.4)) as server:
        with VlmAnnotator(config(server.url, concurrency=4, timeout_s=2.0)) as annotator:
            results = list(annotator.annotate_many(iter(items)))
        assert server.max_in_flight == 4
    assert sorted(item.key for item, _ in results) == list(range(8))
    assert all(result.response is not None for _, result in results)


def test_annotate_many_yields_in_completion_order():
    # The first request to arrive is answered after 0.6 s, the second at once.
    replies = [Reply(content=answer_text(), delay_s=0.6), Reply(content=answer_text())]
    items = [VlmItem(frame(0, colour), BOX, frame(), BOX, key=colour) for colour in (RED, BLUE)]
    with FakeVlmServer(replies) as server:
        with VlmAnnotator(config(server.url, timeout_s=2.0)) as annotator:
            keys = [item.key for item, _ in annotator.annotate_many(items)]
        seen = sorted(server.requests, key=lambda request: request.end)
    # Which item a request carried: the target colour at the centre of its search image.
    finished = [tuple(int(v) for v in decode_data_url(
        request.body['messages'][0]['content'][2]['image_url']['url'])[224, 224])
        for request in seen]
    assert [min((RED, BLUE), key=lambda c: np.abs(np.subtract(c, f)).sum()) for f in finished] \
        == keys
    assert seen[1].end - seen[0].end > 0.4


def test_close_aborts_requests_in_flight_and_cancels_queued_work():
    items = (VlmItem(frame(), BOX, frame(), BOX, key=i) for i in range(50))
    with FakeVlmServer(default=Reply(content=answer_text(), delay_s=5.0)) as server:
        annotator = VlmAnnotator(config(server.url, timeout_s=10.0, concurrency=2))
        threading.Timer(0.3, annotator.close).start()
        start = time.monotonic()
        yielded = list(annotator.annotate_many(items))
        elapsed = time.monotonic() - start
        annotator.close()  # idempotent
        assert len(server.requests) == 2
        assert list(annotator.annotate_many([VlmItem(frame(), BOX, frame(), BOX)])) == []
        direct = annotator.annotate(frame(), BOX, frame(), BOX)
    assert yielded == [] and elapsed < 2.0
    assert direct.response is None and direct.error == CANCELLED


def test_breaking_out_of_annotate_many_cancels_queued_items():
    # Two workers, four items queued: the first request to arrive is answered at once, the
    # others after 0.6 s.
    items = [VlmItem(frame(), BOX, frame(), BOX, key=i) for i in range(6)]
    slow = Reply(content=answer_text(), delay_s=0.6)
    with FakeVlmServer([Reply(content=answer_text())], default=slow) as server:
        with VlmAnnotator(config(server.url, timeout_s=2.0, concurrency=2)) as annotator:
            for item, result in annotator.annotate_many(items):
                assert result.response is not None
                break
            time.sleep(1.0)  # the slow ones are done: a worker is free for queued work
            # The first two, maybe a third (taken by the free worker before the break); never
            # the fourth, which was still queued.
            assert 2 <= len(server.requests) <= 3


def test_config_validation_and_missing_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match='url'):
        VlmConfig('localhost:8000', 'm')
    with pytest.raises(ValueError, match='url'):
        VlmConfig('ftp://host/v1', 'm')
    with pytest.raises(ValueError, match='concurrency'):
        VlmConfig('http://h/v1', 'm', concurrency=0)
    with pytest.raises(ValueError, match='timeout_s'):
        VlmConfig('http://h/v1', 'm', timeout_s=0)
    with pytest.raises(ValueError, match=f'{KEY_ENV} .* not set'):
        VlmAnnotator(VlmConfig('http://h/v1', 'm', api_key_env=KEY_ENV))
    assert VlmConfig('http://h:8000/v1/', 'm').endpoint == 'http://h:8000/v1/chat/completions'


def test_retry_after_parsing():
    assert parse_retry_after('3') == 3.0
    assert parse_retry_after('-1') == 0.0
    assert parse_retry_after(None) is None and parse_retry_after('soon') is None
    date = 'Wed, 21 Oct 2015 07:28:00 GMT'
    assert parse_retry_after(date, now=1445412470.0) == pytest.approx(10.0)
