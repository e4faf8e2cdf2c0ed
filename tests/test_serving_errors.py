"""The kinds of error (serving/errors.py) and their one HTTP mapping (serving/app.py's STATUS), on real servers;
out of memory, wherever the model runs out, is one 503."""
import http.client
import inspect
import json

import numpy as np
import pytest
import tensorflow as tf

import serving_model as sm
from serving import app, errors, exported, server as http_server, user_hints
from test_app import b64, call

KINDS = {'BadInput': 400, 'Unsupported': 400, 'NotFound': 404, 'NotAllowed': 405, 'SlowClient': 408,
         'TooLarge': 413, 'ModelFailed': 500, 'ServingError': 500, 'Busy': 503, 'TimedOut': 503, 'OutOfMemory': 503}


def test_every_kind_has_its_status():
  kinds = {name for name, kind in inspect.getmembers(errors, inspect.isclass) if issubclass(kind, errors.ServingError)}
  assert kinds == set(KINDS)
  assert {name: app.status_of(getattr(errors, name)('x')) for name in kinds} == KINDS
  assert app.status_of(user_hints.HintError('x')) == 400   # a kind derived from one has its status


def test_at_names_the_value_and_keeps_the_kind():
  e = errors.TooLarge('the image is 9000x9000').at('instances[2]')
  assert type(e) is errors.TooLarge and str(e) == 'instances[2]: the image is 9000x9000'
  hint = user_hints.HintError('x is nan').at('inputs.points[0][1]')
  assert type(hint) is user_hints.HintError and str(hint) == 'inputs.points[0][1]: x is nan'


@pytest.fixture(scope='module')
def pattern_server(tmp_path_factory):
  base = tmp_path_factory.mktemp('pattern')
  sm.save_pattern(str(base / '1'))
  api = app.make_app(app.Service(exported.Colorizer(str(base))))

  @api.get('/raise/{kind}')   # a route of this test's own, raising each kind as the layers below do
  async def raise_kind(kind: str, unread: bool = False):
    raise getattr(errors, kind)(f'a {kind} here', body_unread=unread)

  with http_server.Background(api) as address:
    yield address


@pytest.mark.parametrize('kind', sorted(KINDS))
def test_each_kind_is_answered_with_its_status_body_and_headers(pattern_server, kind):
  for unread in (False, True):
    status, headers, body = call(pattern_server, 'GET', f'/raise/{kind}?unread={str(unread).lower()}')
    assert status == KINDS[kind] and json.loads(body) == {'error': f'a {kind} here'}
    assert headers['Content-Type'] == 'application/json'
    assert headers.get('Retry-After') == ('1' if status == 503 else None)
    assert (headers.get('Connection') == 'close') == unread


@pytest.fixture(scope='module')
def trained_server():
  colorizer = sm.colorizer()
  with http_server.Background(app.make_app(app.Service(colorizer))) as address:
    yield address, colorizer


def _every_model_route(server, colorizer):
  """(where, status, headers, error) of one request through each way to the model: uploads, suggestions, and TF
  Serving's signatures."""
  photo = sm.jpeg(sm.grey_photo(60, 80))
  hints = json.dumps([{'x': 0.5, 'y': 0.5, 'colour': '#3060c0'}])
  hint_instance = {'image_bytes': b64(photo), 'points': [[0.5, 0.5]], 'colours': [[48, 96, 192]], 'radius': [0]}
  l = np.zeros([1, colorizer.image_size, colorizer.image_size, 1], np.float32).tolist()
  requests = [
      ('the upload', '/v1/colorize', photo, {}),
      ('the upload', '/v1/colorize?format=png', photo, {'X-Colorizer-Hints': hints}),
      ('the upload', '/v1/colorize/suggest?x=0.5&y=0.5', photo, {}),
      ('instances[0]', '/v1/models/colorizer:predict', json.dumps({'instances': [b64(photo)]}), {}),
      ('instances[0].image_bytes', '/v1/models/colorizer:predict',
       json.dumps({'signature_name': 'colorize_hints', 'instances': [hint_instance]}), {}),
      ('suggest_colours', '/v1/models/colorizer:predict',
       json.dumps({'signature_name': 'suggest_colours', 'instances': [dict(hint_instance, at=[[0.2, 0.2]])]}), {}),
      ('raw', '/v1/models/colorizer:predict', json.dumps({'signature_name': 'raw', 'instances': l}), {})]
  answers = []
  for where, path, body, headers in requests:
    status, got, text = call(server, 'POST', path, body, headers)
    answers.append((where, status, got, json.loads(text)['error'] if status != 200 else None))
  return answers


@pytest.mark.parametrize('raised, status, message', [
    (lambda: tf.errors.ResourceExhaustedError(None, None, 'OOM when allocating tensor'), 503,
     'the server ran out of memory (OOM when allocating tensor): retry later'),
    (lambda: MemoryError('no more'), 503, 'the server ran out of memory (no more)'),
    (lambda: tf.errors.InternalError(None, None, 'a kernel broke'), 500,
     'the model failed on it: InternalError: a kernel broke'),
])
def test_a_model_failure_is_one_answer_on_every_route(trained_server, monkeypatch, raised, status, message):
  server, colorizer = trained_server

  def fail(self, name, **inputs):
    raise raised()
  monkeypatch.setattr(type(colorizer), '__call__', fail)
  for where, got, headers, error in _every_model_route(server, colorizer):
    assert got == status and error.startswith(f'{where}: {message}'), (where, error)
    assert headers.get('Retry-After') == ('1' if status == 503 else None)
  monkeypatch.undo()
  assert all(got == 200 for _, got, _, _ in _every_model_route(server, colorizer))


def test_an_image_the_model_cannot_decode_is_the_inputs_fault(trained_server):
  server, colorizer = trained_server
  photo = sm.jpeg(sm.grey_photo(120, 160))
  broken = photo[:len(photo) // 3]   # a header that passes the checks, data that does not decode
  results = colorizer.colorize([broken])
  assert isinstance(results[0], errors.BadInput) and 'cannot decode' in str(results[0])
  conn = http.client.HTTPConnection(*server, timeout=60)
  conn.request('POST', '/v1/models/colorizer:predict', json.dumps({'instances': [b64(broken)]}))
  answer = conn.getresponse()
  assert answer.status == 400
  assert json.loads(answer.read())['error'].startswith('instances[0]: the model cannot decode or colour it')
  conn.close()
