"""The server under hostile and heavy clients (tests/hostile.py), on a real uvicorn server on 127.0.0.1.

Each hostile case once, with short time limits so that the whole file stays quick; benchmarks/load.py
measures the same cases at full size. The server must answer every well-formed request or say 503, never hang,
and keep answering /healthz.
"""
import gc
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import tensorflow as tf

import serving_model as sm
from benchmarks import hostile
from paths import REPO
from serving import app, server as http_server

TIMEOUT = 1.0   # header, body and keep-alive time-outs of the test server, seconds
LIMITS = dict(max_bytes=1_000_000, max_pixels=2_000_000, max_pending=8)


@pytest.fixture(scope='module')
def service():
  return app.Service(sm.colorizer(), **LIMITS)


@pytest.fixture(scope='module')
def server(service):
  with http_server.Background(app.make_app(service, body_timeout=TIMEOUT), header_timeout=TIMEOUT,
                              keep_alive=TIMEOUT) as address:
    yield address


@pytest.fixture(scope='module')
def photo():
  return sm.jpeg(sm.grey_photo(120, 160))


def healthy(server):
  answer = hostile.get(server, '/healthz', timeout=5)
  return answer.status == 200 and answer.json()['status'] == 'ok'


# ---------------------------------------------------------------- Content-Length

@pytest.mark.parametrize('value', ['-1', 'abc', '1e3', '10, 20'])
def test_a_malformed_content_length_is_refused_at_once(server, value):
  answer = hostile.raw(server, hostile.request('POST', '/v1/colorize', b'x' * 10, length=value), timeout=5)
  assert answer.status == 400 and answer.seconds < 2
  assert healthy(server)


def test_a_missing_content_length_is_an_empty_body(server, photo):
  answer = hostile.raw(server, hostile.request('POST', '/v1/colorize', length=False), timeout=5)
  assert answer.status == 400 and 'empty request body' in answer.json()['error']
  answer = hostile.raw(server, hostile.request('POST', '/v1/models/colorizer:predict', length=False), timeout=5)
  assert answer.status == 400 and 'empty request body' in answer.json()['error']


def test_a_huge_content_length_is_refused_before_any_body(server):
  answer = hostile.raw(server, hostile.request('POST', '/v1/colorize', length=10 ** 12), timeout=5)
  assert answer.status == 413 and 'limit of 1000000' in answer.json()['error']
  assert answer.headers['connection'] == 'close' and answer.seconds < 2


def test_a_body_over_the_limit_is_answered_413_and_the_client_sees_it(server):
  answer = hostile.post(server, '/v1/colorize', b'\0' * 1_500_000)
  assert answer.status == 413 and 'limit' in answer.json()['error']


def test_a_lying_content_length_times_out_with_408(server):
  answer = hostile.raw(server, hostile.request('POST', '/v1/colorize', b'only ten b', length=1000), timeout=10)
  assert answer.status == 408 and 'did not arrive within' in answer.json()['error']
  assert TIMEOUT <= answer.seconds < TIMEOUT + 2


def test_chunked_uploads_work_and_are_limited_as_they_arrive(server, photo):
  plain = hostile.post(server, '/v1/colorize', photo)
  answer = hostile.raw(server, hostile.chunked('POST', '/v1/colorize', photo, chunk=1000))
  assert answer.status == plain.status == 200 and answer.body == plain.body
  answer = hostile.raw(server, hostile.chunked('POST', '/v1/colorize', b'\0' * 5_000_000))
  assert answer.status == 413


# ---------------------------------------------------------------- connections and time

def test_1000_slow_clients_hold_nothing_and_health_answers(server):
  half = 500
  socks = hostile.slow_clients(server, half, partial=b'POST /v1/colorize HTTP/1.1\r\nHost: x\r\n')   # headers
  socks += hostile.slow_clients(server, half)                                             # announced body
  started = time.monotonic()
  assert healthy(server)
  # Loose: the server shares this process and two cores with the clients, and a loaded CI machine (load 10) took
  # over 3 s once; a server blocked behind the clients would not answer within healthy()'s 5 s at all.
  assert time.monotonic() - started < 10.0
  assert hostile.closed_by_server(socks, timeout=TIMEOUT + 5) == 2 * half   # each within its time-out
  assert healthy(server)


def test_keep_alive_serves_several_requests_on_one_connection(server, photo):
  with socket.create_connection(server, timeout=30) as sock:
    for _ in range(3):
      sock.sendall(hostile.request('POST', '/v1/colorize', photo))
      answer = hostile.read_answer(sock, time.perf_counter())
      assert answer.status == 200 and answer.headers.get('connection') != 'close'
    time.sleep(TIMEOUT + 1)   # idle past the keep-alive time-out: the server closes it
    assert sock.recv(1) == b''


# ---------------------------------------------------------------- malformed content

@pytest.mark.parametrize('make, status, message', [
    (lambda photo: hostile.truncated_jpeg(photo), 400, 'cannot decode'),
    (lambda photo: hostile.png_bomb(), 413, 'pixels'),
    (lambda photo: b'GIF89a' + b'\xff' * 100, 400, 'image'),
])
def test_malformed_images_and_bombs_are_refused_through_both_apis(server, photo, make, status, message):
  data = make(photo)
  answer = hostile.post(server, '/v1/colorize', data)
  assert answer.status == status and message in answer.json()['error'], answer.body
  answer = hostile.post(server, '/v1/models/colorizer:predict', hostile.predict_body([data]))
  assert answer.status == status and 'instances[0]' in answer.json()['error']


@pytest.mark.parametrize('body, message', [
    (b'{"instances": [{"b64": ', 'not JSON'),
    (b'\xff\xfe{}', 'not JSON'),
    (b'{"instances": [{"b64": "a"}]}', 'malformed base64'),
    (b'{"instances": [{"b64": 3}]}', 'expected {"b64"'),
    (b'[1, 2]', 'JSON object'),
])
def test_malformed_json_and_base64_name_the_field(server, body, message):
  answer = hostile.post(server, '/v1/models/colorizer:predict', body)
  assert answer.status == 400 and message in answer.json()['error']


# ---------------------------------------------------------------- the model's failures and waits

def test_an_out_of_memory_batch_is_503_not_the_clients_fault(service, server, photo, monkeypatch):
  def oom(name, **inputs):
    raise tf.errors.ResourceExhaustedError(None, None, 'OOM when allocating tensor with shape [8,4096,4096,3]')
  monkeypatch.setattr(type(service.colorizer), '__call__', lambda self, name, **inputs: oom(name, **inputs))
  answer = hostile.post(server, '/v1/colorize', photo)
  assert answer.status == 503 and 'out of memory' in answer.json()['error']
  assert answer.headers['retry-after'] == '1'
  answer = hostile.post(server, '/v1/models/colorizer:predict', hostile.predict_body([photo, photo]))
  assert answer.status == 503 and 'out of memory' in answer.json()['error']
  monkeypatch.undo()
  assert hostile.post(server, '/v1/colorize', photo).status == 200


def test_a_model_call_past_the_request_timeout_is_503_and_frees_its_slot(photo, monkeypatch):
  colorizer = sm.colorizer()
  svc = app.Service(colorizer, request_timeout=0.5, max_pending=1, **{k: v for k, v in LIMITS.items()
                                                                       if k != 'max_pending'})
  real = colorizer.colorize
  monkeypatch.setattr(colorizer, 'colorize', lambda images, fmt='jpeg': time.sleep(1.5) or real(images, fmt))
  with http_server.Background(app.make_app(svc)) as address:
    answer = hostile.post(address, '/v1/colorize', photo, timeout=10)
    assert answer.status == 503 and 'did not finish within' in answer.json()['error']
    assert answer.seconds < 1.5
    busy = hostile.post(address, '/v1/colorize', photo, timeout=10)   # the slot is still held by the model call
    assert busy.status == 503 and 'busy' in busy.json()['error']
    # The slot comes back when the model call ends: 1.5 s of sleep, then the model (longer on a loaded machine).
    deadline = time.monotonic() + 60
    while hostile.get(address, '/healthz').json()['pending'] and time.monotonic() < deadline:
      time.sleep(0.1)
    assert hostile.get(address, '/healthz').json()['pending'] == 0
    monkeypatch.undo()
    assert hostile.post(address, '/v1/colorize', photo, timeout=30).status == 200


def test_a_batch_with_too_few_results_fails_its_requests_instead_of_hanging():
  from serving import batching
  batcher = batching.Batcher(lambda items: items[:-1], max_batch=4)
  futures = [batcher.submit(i) for i in range(3)]
  for f in futures:
    with pytest.raises(RuntimeError, match='results for a batch'):
      f.result(timeout=10)


# ---------------------------------------------------------------- load

def test_a_full_garbage_collection_while_serving_walks_only_what_serving_allocated(server):
  """A full collection stops every thread, the event loop too, while it walks the tracked objects: ~1M in a test
  process (TensorFlow, the models), 1.6-2.6 s on a loaded machine, which /healthz waited out when it came during
  the load below. The objects alive when the server started are frozen out of it."""
  assert gc.get_freeze_count() > 5 * len(gc.get_objects())


def test_64_concurrent_clients_are_all_answered_with_rss_bounded(server, photo):
  rss_before = psutil.Process().memory_info().rss
  report = hostile.load(server, [photo, sm.png(sm.grey_photo(200, 150))], clients=64, seconds=4)
  seen = (f'{report.statuses}, /healthz worst {report.health_worst:.2f} s, {report.health_failures} failed, '
          f'load {os.getloadavg()[0]:.1f}')
  assert set(report.statuses) <= {200, 503}, seen
  assert report.statuses.get(200, 0) >= 8, seen
  assert report.health_failures == 0 and report.health_worst < 2.0, seen
  # The pending limit (8) bounds what the server holds; the bound here is loose: it is a shared test process.
  grown = psutil.Process().memory_info().rss - rss_before
  assert grown < 1.5 * 2 ** 30, f'RSS grew {grown / 2 ** 20:.0f} MiB; {seen}'


# ---------------------------------------------------------------- the program: OpenAPI, SIGTERM

def test_sigterm_finishes_the_request_in_progress_then_exits(tmp_path):
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  proc = subprocess.Popen([sys.executable, '-m', 'serving.app', '--model', sm.export_dir(), '--port', str(port)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    address = ('127.0.0.1', port)
    deadline = time.monotonic() + 120
    while True:
      try:
        if healthy(address):
          break
      except OSError:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.3)
    spec = hostile.get(address, '/openapi.json').json()
    assert {'/v1/colorize', '/v1/models/{name}:predict', '/healthz'} <= set(spec['paths'])
    big = sm.jpeg(sm.grey_photo(1500, 2000))
    with socket.create_connection(address, timeout=60) as sock:
      sock.sendall(hostile.request('POST', '/v1/colorize', big))
      time.sleep(0.3)   # the request is in the model now
      proc.send_signal(signal.SIGTERM)
      answer = hostile.read_answer(sock, time.perf_counter())
    assert answer.status == 200 and sm.decoded(answer.body).shape == (1500, 2000, 3)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and 'Stopped' in out, err
    with pytest.raises(OSError):
      socket.create_connection(address, timeout=2).close()
  finally:
    if proc.poll() is None:
      proc.kill()


def test_uploads_past_the_buffered_bytes_budget_are_503_and_the_budget_comes_back(photo):
  svc = app.Service(sm.colorizer(), max_buffered=2 * len(photo) + 100, **LIMITS)
  with http_server.Background(app.make_app(svc)) as address:
    with socket.create_connection(address, timeout=30) as slow:   # one upload in progress holds its bytes
      slow.sendall(hostile.request('POST', '/v1/colorize', photo + photo, length=2 * len(photo))[:-len(photo)])
      time.sleep(0.3)
      answer = hostile.post(address, '/v1/colorize', photo + photo)
      assert answer.status == 503 and '--max-buffered' in answer.json()['error']
      slow.sendall(photo)
      assert hostile.read_answer(slow, time.perf_counter()).status in (400, 200)   # (two JPEGs: the first is read)
    assert hostile.get(address, '/healthz').json()['buffered_bytes'] == 0
    assert hostile.post(address, '/v1/colorize', photo).status == 200
