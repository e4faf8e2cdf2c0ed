"""The REST API for real: an HTTP server on 127.0.0.1, a client speaking TF Serving's predict API."""
import base64
import concurrent.futures
import http.client
import json

import numpy as np
import pytest
import tensorflow as tf

import serving_model as sm
from serving import app, server as http_server


@pytest.fixture(scope='module')
def colorizer():
  return sm.colorizer()


@pytest.fixture(scope='module')
def server(colorizer):
  service = app.Service(colorizer, max_bytes=1_000_000, max_pixels=2_000_000, max_batch=8)
  with http_server.Background(app.make_app(service)) as address:
    yield address


def call(server, method, path, body=None, headers=None):
  """(status, headers (case-insensitive), body bytes); a fresh connection per call, with a timeout so nothing
  hangs."""
  conn = http.client.HTTPConnection(*server, timeout=60)
  try:
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.headers, r.read()
  finally:
    conn.close()


def predict(server, payload, path='/v1/models/colorizer:predict'):
  status, _, body = call(server, 'POST', path, json.dumps(payload).encode(), {'Content-Type': 'application/json'})
  return status, json.loads(body)


def b64(data):
  return {'b64': base64.b64encode(data).decode()}


def direct(colorizer, signature, images):
  return list(colorizer.signature(signature)(image_bytes=tf.constant(images))['image_bytes'].numpy())


@pytest.mark.parametrize('signature', ['serving_default', 'colorize_png'])
def test_predict_row_format_equals_the_signature(server, colorizer, signature):
  image = sm.jpeg(sm.grey_photo(240, 320))
  payload = {'instances': [b64(image)]} | ({'signature_name': signature} if signature != 'serving_default' else {})
  status, response = predict(server, payload)
  assert status == 200
  (prediction,) = response['predictions']
  assert base64.b64decode(prediction['b64']) == direct(colorizer, signature, [image])[0]


def test_predict_columnar_and_named_inputs_and_versions(server, colorizer):
  images = [sm.jpeg(sm.grey_photo(100, 150)), sm.png(sm.grey_photo(90, 60))]
  want = [sm.decoded(d) for d in direct(colorizer, 'serving_default', images)]
  version = colorizer.version
  for payload, path, key in [
      ({'inputs': {'image_bytes': [b64(i) for i in images]}}, '/v1/models/colorizer:predict', 'outputs'),
      ({'instances': [{'image_bytes': b64(i)} for i in images]},
       f'/v1/models/colorizer/versions/{version}:predict', 'predictions')]:
    status, response = predict(server, payload, path)
    assert status == 200, response
    got = [sm.decoded(base64.b64decode(p['b64'])) for p in response[key]]
    for g, w in zip(got, want):   # the server may batch differently from the direct call: float noise only
      assert g.shape == w.shape and np.abs(g.astype(int) - w).max() <= 2


def test_raw_signature_takes_json_tensors(server, colorizer):
  size = colorizer.image_size
  l = np.random.default_rng(0).uniform(0, 100, (1, size, size, 1)).astype(np.float32)
  status, response = predict(server, {'signature_name': 'raw', 'instances': l.round(2).tolist()})
  assert status == 200
  want = colorizer('raw', l=tf.constant(l.round(2)))
  (row,) = response['predictions']
  np.testing.assert_allclose(np.array(row['ab']), want['ab'][0], atol=1e-3)


def test_upload_answers_a_jpeg_of_the_inputs_size(server):
  status, headers, body = call(server, 'POST', '/v1/colorize', sm.jpeg(sm.grey_photo(333, 222)),
                               {'Content-Type': 'image/jpeg'})
  assert status == 200 and headers['Content-Type'] == 'image/jpeg'
  assert sm.decoded(body).shape == (333, 222, 3) and 'X-Colorizer-Note' not in headers
  status, headers, body = call(server, 'POST', '/v1/colorize?format=png', sm.png(sm.skimage.data.coffee()))
  assert status == 200 and headers['Content-Type'] == 'image/png' and body[:4] == b'\x89PNG'
  assert 'already had colour' in headers['X-Colorizer-Note']


def test_health_status_and_metadata(server, colorizer):
  status, _, body = call(server, 'GET', '/healthz')
  assert status == 200 and json.loads(body)['status'] == 'ok'
  status, _, body = call(server, 'GET', '/v1/models/colorizer')
  assert json.loads(body)['model_version_status'][0] == {
      'version': str(colorizer.version), 'state': 'AVAILABLE', 'status': {'error_code': 'OK', 'error_message': ''}}
  status, _, body = call(server, 'GET', '/v1/models/colorizer/metadata')
  meta = json.loads(body)
  defs = meta['metadata']['signature_def']['signature_def']
  assert set(defs) == set(colorizer.signature_names) >= {'serving_default', 'colorize_png', 'raw'}
  assert defs['serving_default']['inputs']['image_bytes']['dtype'] == 'DT_STRING'
  assert meta['colorizer']['image_size'] == colorizer.image_size


BIG = sm.png(np.random.default_rng(1).integers(0, 256, (1100, 1000), np.uint8))   # 1.1 MB: over max_bytes


@pytest.mark.parametrize('method, path, body, status, message', [
    ('POST', '/v1/colorize', b'', 400, 'empty request body'),
    ('POST', '/v1/colorize', b'hello, not a photo', 400, 'not an image'),
    ('POST', '/v1/colorize', BIG, 413, 'over this server\'s limit'),
    ('POST', '/v1/colorize', sm.png(np.zeros((2000, 1001), np.uint8)), 413, 'pixels, over the limit'),
    ('POST', '/v1/colorize?format=gif', sm.jpeg(sm.grey_photo(20, 20)), 400, 'format=jpeg or format=png'),
    ('POST', '/v1/models/colorizer:predict', b'', 400, 'empty request body'),
    ('POST', '/v1/models/colorizer:predict', b'{"instances": [', 400, 'not JSON'),
    ('POST', '/v1/models/colorizer:predict', b'{"instances": [{"b64": "%%%"}]}', 400, 'malformed base64'),
    ('POST', '/v1/models/colorizer:predict', b'{"instances": [{"b64": "aGVsbG8="}]}', 400,
     'instances[0]: not an image'),
    ('POST', '/v1/models/colorizer:predict', b'{"instances": []}', 400, 'non-empty list'),
    ('POST', '/v1/models/colorizer:predict', b'{"instances": [1], "inputs": [1]}', 400, 'exactly one'),
    ('POST', '/v1/models/colorizer:predict', b'{"signature_name": "x", "instances": [1]}', 400, 'unknown signature'),
    ('POST', '/v1/models/colorizer:predict', b'{"signature_name": "raw", "instances": [[1, 2]]}', 400, 'shape'),
    ('POST', '/v1/models/other:predict', b'{}', 404, 'Servable not found'),
    ('POST', '/v1/models/colorizer/versions/999:predict', b'{}', 404, 'Servable not found'),
    ('POST', '/v1/models/colorizer:classify', b'{}', 400, 'not supported'),
    ('GET', '/v1/nothing', None, 404, 'no such endpoint'),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(server, method, path, body, status, message):
  got, headers, response = call(server, method, path, body)
  assert got == status and headers['Content-Type'] == 'application/json'
  assert message in json.loads(response)['error']
  ok, _, _ = call(server, 'GET', '/healthz')
  assert ok == 200


def test_oversized_body_is_refused_before_it_is_read(server):
  conn = http.client.HTTPConnection(*server, timeout=30)
  conn.putrequest('POST', '/v1/colorize')
  conn.putheader('Content-Length', str(10 ** 9))   # announced, never sent
  conn.endheaders()
  r = conn.getresponse()
  assert r.status == 413 and 'limit' in json.loads(r.read())['error']
  conn.close()


def test_concurrent_requests_are_all_answered_and_batched(server, colorizer, monkeypatch):
  sizes = []
  real = colorizer.colorize
  monkeypatch.setattr(colorizer, 'colorize', lambda images, fmt='jpeg': sizes.append(len(images)) or real(images, fmt))
  images = [sm.jpeg(sm.grey_photo(128 + 16 * i, 160)) for i in range(8)]

  def one(image):
    status, headers, body = call(server, 'POST', '/v1/colorize', image)
    return status, sm.decoded(body).shape

  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    results = list(pool.map(one, images))
  assert results == [(200, (128 + 16 * i, 160, 3)) for i in range(8)]
  assert sum(sizes) == 8 and max(sizes) > 1     # requests that waited shared a model call


def test_page_and_its_files_need_nothing_from_elsewhere(server):
  status, headers, page = call(server, 'GET', '/')
  assert status == 200 and headers['Content-Type'].startswith('text/html')
  assert "default-src 'self'" in headers['Content-Security-Policy']
  text = page.decode()
  assert 'http://' not in text and 'https://' not in text and '//cdn' not in text
  for asset in ('/static/app.js', '/static/strength.js', '/static/style.css'):
    status, _, body = call(server, 'GET', asset)
    assert status == 200 and b'http://' not in body and b'https://' not in body
