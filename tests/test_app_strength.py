"""The colour strength through the REST API, for real: the upload route's ?strength=, TF Serving's predict on the
*_strength signatures, batching across strengths, /healthz and the metadata, the 400s, and models without the
control (an mse model, an export made before it existed), on HTTP servers on 127.0.0.1.

The distribution model (tests/serving_model.save_distribution) has a known colour distribution, so paler and more
vivid are measured; with hints it paints each hint's colour where the hint is, at every strength.
"""
import base64
import concurrent.futures
import json
import urllib.parse

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

import serving_model as sm
from serving import app, exported, server as http_server
from trainer import abbins
from test_app import b64, call, predict
from test_app_hints import GREEN, grey, hue, hue_gap

LIMITS = dict(max_bytes=1_000_000, max_pixels=2_000_000)


def _server(colorizer):
  return http_server.Background(app.make_app(app.Service(colorizer, **LIMITS)))


@pytest.fixture(scope='module')
def trained():
  colorizer = sm.colorizer()
  with _server(colorizer) as address:
    yield address, colorizer


@pytest.fixture(scope='module')
def distribution(tmp_path_factory):
  base = tmp_path_factory.mktemp('distribution-hints')
  sm.save_distribution(str(base / '1'), hints=True)
  colorizer = exported.Colorizer(str(base))
  with _server(colorizer) as address:
    yield address, colorizer


@pytest.fixture(scope='module')
def without(tmp_path_factory):
  """Servers on models without the control: {'mse': address, 'old': address}."""
  base = tmp_path_factory.mktemp('no-strength')
  sm.save_pattern(str(base / 'mse' / '1'), hints=True)
  sm.save_distribution(str(base / 'old' / '1'), hints=True, strength=False)
  with _server(exported.Colorizer(str(base / 'mse'))) as mse, _server(exported.Colorizer(str(base / 'old'))) as old:
    yield {'mse': mse, 'old': old}


def upload(server, body, strength=None, hints=None, fmt=None):
  query = {k: v for k, v in (('strength', strength), ('format', fmt)) if v is not None}
  if hints is not None:
    query['hints'] = json.dumps(hints)
  return call(server, 'POST', '/v1/colorize?' + urllib.parse.urlencode(query), body)


def near(got, want, levels=2):
  """Decoded images equal up to float noise between batchings (a level or two)."""
  got, want = sm.decoded(got), sm.decoded(want)
  return got.shape == want.shape and np.abs(got.astype(int) - want).max() <= levels


def test_upload_with_a_strength_is_the_strength_signature_and_the_default_the_bytes_of_none(trained):
  server, colorizer = trained
  image = sm.jpeg(sm.grey_photo(240, 320))
  status, _, plain = upload(server, image)
  assert status == 200
  for strength in (0, 0.25, 1):
    status, headers, body = upload(server, image, strength)
    assert status == 200 and headers['Content-Type'] == 'image/jpeg', body
    assert body == colorizer.colorize([image], strength=strength)[0]
  assert upload(server, image, colorizer.default_strength)[2] == plain
  status, headers, body = upload(server, image, 1, fmt='png')
  assert status == 200 and headers['Content-Type'] == 'image/png'
  assert body == colorizer.colorize([image], 'png', strength=1.0)[0]


def test_paler_and_more_vivid_with_hints_that_still_apply(distribution):
  server, _ = distribution
  photo = grey(120, 160)
  hints = [{'x': 0.25, 'y': 0.5, 'colour': GREEN, 'radius': 0.05}]
  chroma = {}
  for strength in (0, None, 1):
    status, _, body = upload(server, photo, strength, hints)
    assert status == 200, body
    rgb = sm.decoded(body)
    assert hue_gap(hue(rgb[58:63, 38:43]), hue((0x2a, 0x9d, 0x3a))) < 12, strength   # the hint's colour, there
    chroma[strength] = sm.chroma(rgb[:, 100:])                                         # elsewhere: the strength
    assert upload(server, photo, strength)[0] == 200
  assert chroma[0] + 1 < chroma[None] < chroma[1] - 1, chroma


def test_requests_with_different_strengths_share_model_calls(trained, monkeypatch):
  server, colorizer = trained
  calls = []
  real = colorizer.colorize

  def spy(images, fmt='jpeg', hints=None, strength=None):
    calls.append(list(strength) if strength is not None else None)
    return real(images, fmt, hints, strength)
  monkeypatch.setattr(colorizer, 'colorize', spy)
  images = [sm.jpeg(sm.grey_photo(128 + 16 * i, 160)) for i in range(8)]
  strengths = [i / 7 for i in range(8)]
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    answers = list(pool.map(lambda args: upload(server, *args), zip(images, strengths)))
  monkeypatch.undo()
  assert [a[0] for a in answers] == [200] * 8
  assert all(near(body, colorizer.colorize([image], strength=s)[0])
             for (_, _, body), image, s in zip(answers, images, strengths))
  assert None not in calls and sum(map(len, calls)) == 8
  assert max(len(set(c)) for c in calls) > 1      # one model call, photos of different strengths


@pytest.mark.parametrize('signature', ['colorize_strength', 'colorize_strength_png'])
def test_predict_on_the_strength_signatures(trained, signature):
  server, colorizer = trained
  images = [sm.jpeg(sm.grey_photo(120, 160)), sm.png(sm.grey_photo(90, 70))]
  want = colorizer(signature, image_bytes=tf.constant(images), strength=tf.constant([0.0, 1.0]))['image_bytes']
  status, response = predict(server, {'signature_name': signature, 'instances': [
      {'image_bytes': b64(images[0]), 'strength': 0.0}, {'image_bytes': b64(images[1]), 'strength': 1}]})
  assert status == 200, response
  assert all(near(base64.b64decode(p['b64']), w) for p, w in zip(response['predictions'], want))
  status, response = predict(server, {'signature_name': signature, 'inputs': {
      'image_bytes': [b64(i) for i in images], 'strength': [0.0, 1.0]}})
  assert status == 200, response
  assert all(near(base64.b64decode(p['b64']), w) for p, w in zip(response['outputs'], want))


def test_predict_with_hints_and_strength_checks_the_hints_as_ever(trained):
  server, colorizer = trained
  image = sm.jpeg(sm.grey_photo(120, 160))
  tensors = dict(points=[[0.2, 0.3]], colours=[[40, 90, 200]], radius=[0.05])
  for signature in ('colorize_hints_strength', 'colorize_hints_strength_png'):
    want = colorizer(signature, image_bytes=tf.constant([image]), strength=tf.constant([0.9]),
                     **{k: tf.constant([v], tf.float32) for k, v in tensors.items()})['image_bytes'][0]
    status, response = predict(server, {'signature_name': signature, 'instances': [
        {'image_bytes': b64(image), 'strength': 0.9, **tensors}]})
    assert status == 200, response
    assert near(base64.b64decode(response['predictions'][0]['b64']), want)
  status, response = predict(server, {'signature_name': 'colorize_hints_strength', 'instances': [
      {'image_bytes': b64(image), 'strength': 0.9, **tensors, 'points': [[1.2, 0.3]]}]})
  assert status == 400 and 'instances[0].points[0]: (1.2, 0.3) is outside the photo' in response['error']


@pytest.mark.parametrize('strength, message', [
    (2, 'strength: 2 is not in 0..1: a colour strength goes from 0 (palest'), (-0.5, 'strength: -0.5 is not in 0..1'),
    ('nan', 'strength: nan is not in 0..1'), ('abc', 'query.strength'),
])
def test_a_bad_strength_is_a_400_naming_it(trained, strength, message):
  for hints in (None, [{'x': 0.5, 'y': 0.5, 'colour': GREEN}]):
    status, _, body = upload(trained[0], sm.jpeg(sm.grey_photo(40, 60)), strength, hints)
    assert status == 400 and message in json.loads(body)['error'], body


@pytest.mark.parametrize('instances, message', [
    ([{'strength': 1.5}], 'instances[0].strength: 1.5 is not in 0..1'),
    ([{'strength': 0.5}, {'strength': float('nan')}], 'instances[1].strength: nan is not in 0..1'),
    ([{'strength': [0.5]}], 'instances[0].strength: shape [1], the signature takes []'),
    ([{}], 'instances[0]: expected an object with the inputs'),
])
def test_a_bad_predict_strength_is_a_400_naming_the_value(trained, instances, message):
  payload = {'signature_name': 'colorize_strength',
             'instances': [{'image_bytes': b64(grey(40, 60)), **i} for i in instances]}
  status, response = predict(trained[0], payload)
  assert status == 400 and message in response['error'], response


def test_health_metadata_and_openapi_tell_of_the_strength(trained, without):
  server, colorizer = trained
  assert json.loads(call(server, 'GET', '/healthz')[2])['strength'] == colorizer.default_strength == abbins.DEFAULT_STRENGTH
  defs = json.loads(call(server, 'GET', '/v1/models/colorizer/metadata')[2])['metadata']['signature_def'][
      'signature_def']
  assert set(exported.STRENGTH_SIGNATURES) <= set(defs)
  # TF Serving names dtypes by the DataType enum (float32 is DT_FLOAT): its clients parse them as such
  assert {t['dtype'] for d in defs.values() for side in ('inputs', 'outputs') for t in d[side].values()} <= set(
      types_pb2.DataType.keys())
  assert defs['colorize_hints_strength']['inputs']['strength'] == {
      'dtype': 'DT_FLOAT', 'name': 'strength', 'tensor_shape': {'dim': [{'size': '-1', 'name': ''}],
                                                                'unknown_rank': False}}
  paths = json.loads(call(server, 'GET', '/openapi.json')[2])['paths']
  params = {p['name']: p for p in paths['/v1/colorize']['post']['parameters']}
  assert 'most vivid' in params['strength']['description'] and 'number' in json.dumps(params['strength']['schema'])
  for address in without.values():
    assert json.loads(call(address, 'GET', '/healthz')[2])['strength'] is None
    defs = json.loads(call(address, 'GET', '/v1/models/colorizer/metadata')[2])['metadata']['signature_def'][
        'signature_def']
    assert not set(exported.STRENGTH_SIGNATURES) & set(defs) and 'colorize_hints' in defs


def test_models_without_the_control_refuse_a_strength_and_say_why_and_serve_the_rest(without):
  photo = grey(40, 60)
  hints = [{'x': 0.5, 'y': 0.5, 'colour': GREEN}]
  for kind, why in (('mse', 'predicts one colour per pixel'), ('old', 'was exported before the colour-strength '
                                                                      'control existed: re-export it with python -m '
                                                                      'trainer.export --job-dir JOB_DIR')):
    server = without[kind]
    for given in (None, hints):
      status, _, body = upload(server, photo, 0.5, given)
      assert status == 400 and why in json.loads(body)['error'], body
      assert json.loads(body)['error'].startswith('strength: this model')
      assert upload(server, photo, hints=given)[0] == 200          # without a strength: as before
    status, response = predict(server, {'signature_name': 'colorize_strength', 'instances': [
        {'image_bytes': b64(photo), 'strength': 0.5}]})
    assert status == 400 and "unknown signature_name 'colorize_strength'" in response['error']
    assert predict(server, {'instances': [b64(photo)]})[0] == 200
