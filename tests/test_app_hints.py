"""Hints through the REST API, for real: the upload route with hints, the suggest route, TF Serving's predict on
colorize_hints(_png) and suggest_colours, and the 400s for malformed hints, on HTTP servers on 127.0.0.1.

The pattern model (tests/serving_model.py, hints=True) paints each hint's own colour exactly where the hint is and
a known pattern elsewhere, so where a hint lands is checked to the pixel; the trained test model has every
signature (suggest_colours too).
"""
import base64
import json
import urllib.parse

import numpy as np
import pytest
import skimage.color
import tensorflow as tf

import serving_model as sm
from serving import app, exported, server as http_server, user_hints
from test_app import b64, call, predict

GREY = 119   # L ~ 50: the pattern's and the hints' colours are in gamut there
LIMITS = dict(max_bytes=1_000_000, max_pixels=2_000_000)


@pytest.fixture(scope='module')
def trained():
  colorizer = sm.colorizer()
  with http_server.Background(app.make_app(app.Service(colorizer, **LIMITS))) as address:
    yield address, colorizer


def _pattern_server(base, hints):
  sm.save_pattern(str(base / '1'), hints=hints)
  colorizer = exported.Colorizer(str(base))
  return colorizer, http_server.Background(app.make_app(app.Service(colorizer, **LIMITS)))


@pytest.fixture(scope='module')
def pattern(tmp_path_factory):
  colorizer, background = _pattern_server(tmp_path_factory.mktemp('pattern-hints'), hints=True)
  with background as address:
    yield address, colorizer


@pytest.fixture(scope='module')
def no_hints(tmp_path_factory):
  colorizer, background = _pattern_server(tmp_path_factory.mktemp('pattern-no-hints'), hints=False)
  with background as address:
    yield address, colorizer


def hue(rgb):
  """The hue angle (degrees) of sRGB colours [..., 3] in CIE Lab."""
  lab = skimage.color.rgb2lab(np.asarray(rgb, np.uint8).reshape(-1, 1, 3)).reshape(np.shape(rgb))
  return np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))


def hue_gap(a, b):
  return float(np.abs((np.asarray(a) - b + 180) % 360 - 180).max())


def grey(height, width):
  return sm.png(np.full((height, width), GREY, np.uint8))


def upload(server, body, hints=None, header=None, path='/v1/colorize', query=''):
  params = query + ('&hints=' + urllib.parse.quote(json.dumps(hints)) if hints is not None else '')
  headers = {'X-Colorizer-Hints': json.dumps(header)} if header is not None else {}
  return call(server, 'POST', f'{path}?{params.lstrip("&")}', body, headers)


GREEN, BLUE = '#2a9d3a', '#3060c0'


def test_upload_with_hints_paints_each_hint_where_it_was_placed(pattern):
  server, _ = pattern
  photo = grey(200, 300)
  hints = [{'x': 0.25, 'y': 0.75, 'colour': GREEN}, {'x': 0.8, 'y': 0.2, 'colour': BLUE, 'radius': 0.05}]
  status, headers, plain = upload(server, photo)
  assert status == 200
  status, headers, body = upload(server, photo, hints)
  assert status == 200 and headers['Content-Type'] == 'image/jpeg', body
  with_hints, without = sm.decoded(body), sm.decoded(plain)
  for h in hints:
    row, col = int(h['y'] * 200), int(h['x'] * 300)
    want = hue(user_hints.parse_colour(h['colour'], 'test'))
    assert hue_gap(hue(with_hints[row - 2:row + 3, col - 2:col + 3]), want) < 12   # the hint's hue, where it is
    assert hue_gap(hue(without[row, col]), want) > 60                             # not the pattern's there
  np.testing.assert_allclose(with_hints[100:110, 140:160], without[100:110, 140:160], atol=3)   # far: unchanged
  # The header carries the same; PNG out too.
  status, _, same = upload(server, photo, header=hints)
  assert status == 200 and same == body
  status, headers, png = upload(server, photo, hints, query='format=png')
  assert status == 200 and headers['Content-Type'] == 'image/png'
  assert hue_gap(hue(sm.decoded(png)[150, 75]), hue((0x2a, 0x9d, 0x3a))) < 8
  # No hints, or an empty list: the automatic colouring.
  assert upload(server, photo, [])[2] == plain


def test_predict_colorize_hints_equals_the_signature(trained):
  server, colorizer = trained
  images = [sm.jpeg(sm.grey_photo(120, 160)), sm.png(sm.grey_photo(90, 70))]
  points = [[[0.2, 0.3], [0.7, 0.6], [-1, -1]], [[0.5, 0.5], [-1, -1], [-1, -1]]]   # padded to K = 3
  colours = [[[40, 90, 200], [200, 60, 30], [0, 0, 0]], [[30, 160, 60], [0, 0, 0], [0, 0, 0]]]
  radius = [[0.0, 0.05, 0.0], [0.02, 0.0, 0.0]]
  for signature in ('colorize_hints', 'colorize_hints_png'):
    want = colorizer(signature, image_bytes=tf.constant(images[:1]), points=tf.constant(points[:1], tf.float32),
                     colours=tf.constant(colours[:1], tf.float32), radius=tf.constant(radius[:1]))['image_bytes']
    status, response = predict(server, {'signature_name': signature, 'instances': [
        {'image_bytes': b64(images[0]), 'points': points[0][:2], 'colours': colours[0][:2],   # unpadded works too
         'radius': radius[0][:2]}]})
    assert status == 200, response
    assert base64.b64decode(response['predictions'][0]['b64']) == want[0]
  # Columnar, two photos with padding: as the signature's own batch (the server may run them apart or together).
  want = colorizer('colorize_hints', image_bytes=tf.constant(images), points=tf.constant(points, tf.float32),
                   colours=tf.constant(colours, tf.float32), radius=tf.constant(radius))['image_bytes']
  status, response = predict(server, {'signature_name': 'colorize_hints', 'inputs': {
      'image_bytes': [b64(i) for i in images], 'points': points, 'colours': colours, 'radius': radius}})
  assert status == 200, response
  assert [base64.b64decode(got['b64']) for got in response['outputs']] == list(want)
  # No hints at all ([] or only padding): the automatic colouring.
  status, response = predict(server, {'signature_name': 'colorize_hints', 'instances': [
      {'image_bytes': b64(images[0]), 'points': [], 'colours': [], 'radius': []}]})
  assert status == 200, response
  assert base64.b64decode(response['predictions'][0]['b64']) == colorizer.colorize(images[:1])[0]


def test_suggest_route_and_suggest_colours(trained):
  server, colorizer = trained
  photo = sm.jpeg(sm.grey_photo(160, 200))
  hints = [{'x': 0.1, 'y': 0.1, 'colour': BLUE}]
  status, _, body = upload(server, photo, hints, path='/v1/colorize/suggest', query='x=0.4&y=0.6')
  assert status == 200, body
  answer = json.loads(body)
  assert (answer['x'], answer['y']) == (0.4, 0.6)
  palette = answer['palette']
  assert len(palette) == 6
  assert all(len(p['colour']) == 7 and p['colour'][0] == '#' and 0 <= p['probability'] <= 1 for p in palette)
  probabilities = [p['probability'] for p in palette]
  assert sum(probabilities) <= 1 + 1e-5 and probabilities == sorted(probabilities, reverse=True)
  (want,) = colorizer.suggest(photo, [(0.4, 0.6)], user_hints.from_json(hints))
  assert sorted(p['colour'] for p in palette) == sorted('#%02x%02x%02x' % rgb for rgb, _ in want)
  # TF Serving's predict: two photos asking about 2 and 1 points, one with hints.
  status, response = predict(server, {'signature_name': 'suggest_colours', 'instances': [
      {'image_bytes': b64(photo), 'points': [[0.1, 0.1]], 'colours': [[48, 96, 192]], 'radius': [0],
       'at': [[0.4, 0.6], [0.9, 0.9]]},
      {'image_bytes': b64(sm.png(sm.grey_photo(50, 80))), 'points': [], 'colours': [], 'radius': [],
       'at': [[0.5, 0.5]]}]})
  assert status == 200, response
  first, second = response['predictions']
  assert np.array(first['colours']).shape == (2, 6, 3) and np.array(second['colours']).shape == (1, 6, 3)
  assert np.array(first['probabilities']).shape == (2, 6)
  assert [tuple(c) for c in first['colours'][0]] == [rgb for rgb, _ in want]
  assert np.array(second['probabilities']).sum() <= 1 + 1e-5


def test_metadata_and_health_tell_what_the_model_takes(trained, no_hints):
  status, _, body = call(trained[0], 'GET', '/v1/models/colorizer/metadata')
  defs = json.loads(body)['metadata']['signature_def']['signature_def']
  assert set(defs) == set(exported.SIGNATURES + exported.OPTIONAL_SIGNATURES)
  assert defs['colorize_hints']['inputs']['points']['tensor_shape']['dim'][2]['size'] == '2'
  health = json.loads(call(trained[0], 'GET', '/healthz')[2])
  assert health['hints'] and health['suggests'] and health['max_hints'] == user_hints.MAX_HINTS
  health = json.loads(call(no_hints[0], 'GET', '/healthz')[2])
  assert not health['hints'] and not health['suggests']


TOO_MANY = [{'x': 0.5, 'y': 0.5, 'colour': BLUE}] * (user_hints.MAX_HINTS + 1)


@pytest.mark.parametrize('hints, header, query, message', [
    ([{'x': 1.5, 'y': 0.2, 'colour': BLUE}], None, '', 'hints[0]: (1.5, 0.2) is outside the photo'),
    ([{'x': 0.5, 'y': 0.2, 'colour': BLUE}, {'x': 0.1, 'y': -0.1, 'colour': GREEN}], None, '',
     'hints[1]: (0.1, -0.1) is outside the photo'),
    ([{'x': 0.5, 'y': 0.2, 'colour': BLUE}] * 2 + [{'x': 0.5, 'y': 0.2, 'colour': '#zz'}], None, '',
     "hints[2]: colour '#zz' is not #RRGGBB"),
    ([{'x': 0.5, 'y': 0.2, 'colour': [0, 300, 0]}], None, '', 'hints[0]: colour [0, 300, 0] is not'),
    ([{'x': 0.5, 'y': 0.2, 'colour': BLUE, 'radius': 0.5}], None, '', 'hints[0]: radius 0.5 is not in 0..0.25'),
    ([{'x': 0.5, 'colour': BLUE}], None, '', 'hints[0]: expected x, y, colour'),
    ([[0.5, 0.2, BLUE]], None, '', 'hints[0]: expected an object'),
    ({'x': 0.5}, None, '', 'hints: expected a list of hints'),
    (TOO_MANY, None, '', f'hints: {user_hints.MAX_HINTS + 1} hints, more than the {user_hints.MAX_HINTS}'),
    (None, [{'x': 2, 'y': 0, 'colour': BLUE}], '', 'X-Colorizer-Hints[0]: (2, 0) is outside the photo'),
    ([], [], '', 'both as a query parameter and as the X-Colorizer-Hints header'),
    (None, None, 'hints=%5B%7Bx', 'hints: not JSON'),
])
def test_malformed_hints_get_a_400_naming_the_hint(pattern, hints, header, query, message):
  server, _ = pattern
  for path in ('/v1/colorize', '/v1/colorize/suggest'):
    q = query + ('&x=0.5&y=0.5' if path.endswith('suggest') else '')
    status, headers, body = upload(server, grey(40, 60), hints, header, path, q)
    assert status == 400 and headers['Content-Type'] == 'application/json'
    error = json.loads(body)['error']
    assert message in error or (path.endswith('suggest') and 'cannot suggest' in error), error


def instance(**changes):
  return {'image_bytes': b64(grey(40, 60)), 'points': [[0.5, 0.5]], 'colours': [[48, 96, 192]], 'radius': [0.0],
          **changes}


@pytest.mark.parametrize('payload, message', [
    ({'instances': [instance(), instance(points=[[0.5, 0.5], [1.2, 0.3]], colours=[[0, 0, 0]] * 2,
                                         radius=[0, 0])]},
     'instances[1].points[1]: (1.2, 0.3) is outside the photo'),
    ({'instances': [instance(points=[[-1, -1], [0.5, -1]], colours=[[0, 0, 0]] * 2, radius=[0, 0])]},
     'instances[0].points[1]: (0.5, -1) is outside the photo'),
    ({'instances': [instance(colours=[[48, 96, 256]])]}, 'instances[0].colours[0]: [48, 96, 256] is not an sRGB'),
    ({'instances': [instance(colours=[[-1, 96, 20]])]}, 'instances[0].colours[0]: [-1, 96, 20] is not an sRGB'),
    ({'instances': [instance(radius=[0.3])]}, 'instances[0].radius[0]: 0.3 is not in 0..0.25'),
    ({'instances': [instance(radius=[-0.1])]}, 'instances[0].radius[0]: -0.1 is not in 0..0.25'),
    ({'instances': [instance(points=[[0.5, 0.5]] * (user_hints.MAX_HINTS + 1),
                             colours=[[0, 0, 0]] * (user_hints.MAX_HINTS + 1), radius=[0] * (user_hints.MAX_HINTS + 1))]},
     f'instances[0].points: {user_hints.MAX_HINTS + 1} points, more than the {user_hints.MAX_HINTS}'),
    ({'instances': [instance(colours=[[0, 0, 0]] * 2)]}, 'instances[0].points: 1 points, but 2 colours'),
    ({'instances': [instance(points=[0.5, 0.5])]}, 'instances[0].points: shape [2], the signature takes [None, 2]'),
    ({'instances': [instance(colours=[[1, 2]])]}, 'instances[0].colours: shape [1, 2]'),
    ({'instances': [instance(image_bytes=b64(b'not a photo'))]}, 'instances[0].image_bytes: not an image'),
    ({'instances': [instance(image_bytes=b64(sm.png(np.zeros((2000, 1001), np.uint8))))]},
     'instances[0].image_bytes: the image is 1001x2000'),
    ({'inputs': {'image_bytes': [b64(grey(40, 60))] * 2, 'points': [[[0.5, 0.5]], [[0.5, 7]]],
                 'colours': [[[0, 0, 0]]] * 2, 'radius': [[0]] * 2}}, 'inputs.points[1][0]: (0.5, 7) is outside'),
    ({'instances': [{'image_bytes': b64(grey(40, 60))}]}, 'instances[0]: expected an object with the inputs'),
])
def test_malformed_predict_hints_get_a_400_naming_the_value(pattern, payload, message):
  server, _ = pattern
  status, response = predict(server, {'signature_name': 'colorize_hints', **payload})
  assert status in (400, 413) and message in response['error'], response


@pytest.mark.parametrize('at, message', [
    ([[0.5, 1.5]], 'instances[0].at[0]: (0.5, 1.5) is outside the photo'),
    ([], 'instances[0].at: 0 points; ask about 1 to'),
])
def test_malformed_suggest_points_get_a_400(trained, at, message):
  status, response = predict(trained[0], {'signature_name': 'suggest_colours', 'instances': [instance(at=at)]})
  assert status == 400 and message in response['error'], response


def test_a_model_without_hints_says_so(no_hints):
  server, _ = no_hints
  photo = grey(40, 60)
  status, _, body = upload(server, photo, [{'x': 0.5, 'y': 0.5, 'colour': BLUE}])
  assert status == 400 and 'trained without hints' in json.loads(body)['error']
  status, _, body = upload(server, photo, header=[{'x': 0.5, 'y': 0.5, 'colour': BLUE}])
  assert status == 400 and 'X-Colorizer-Hints: this model was trained without hints' in json.loads(body)['error']
  assert upload(server, photo, [])[0] == 200            # no hints: still coloured
  status, _, body = upload(server, photo, path='/v1/colorize/suggest', query='x=0.5&y=0.5')
  assert status == 400 and 'cannot suggest colours' in json.loads(body)['error']
  status, response = predict(server, {'signature_name': 'colorize_hints', 'instances': [instance()]})
  assert status == 400 and "unknown signature_name 'colorize_hints'" in response['error']


@pytest.mark.parametrize('query, message', [
    ('x=1.5&y=0.5', 'x=1.5 is outside the photo'),
    ('x=0.5', 'query.y: Field required'),
    ('x=abc&y=0.5', 'query.x'),
])
def test_suggest_needs_a_point_inside_the_photo(trained, query, message):
  status, _, body = call(trained[0], 'POST', f'/v1/colorize/suggest?{query}', sm.jpeg(sm.grey_photo(40, 60)))
  assert status == 400 and message in json.loads(body)['error'], body


def test_openapi_documents_the_hints(pattern):
  status, _, body = call(pattern[0], 'GET', '/openapi.json')
  paths = json.loads(body)['paths']
  upload_params = {p['name']: p for p in paths['/v1/colorize']['post']['parameters']}
  assert {'hints', 'x-colorizer-hints', 'format'} <= set(upload_params)
  assert 'hints' in upload_params['hints']['description'] and '"colour"' in upload_params['hints']['description']
  suggest = paths['/v1/colorize/suggest']['post']
  assert {p['name'] for p in suggest['parameters']} >= {'x', 'y', 'hints'}
  assert 'palette' in json.dumps(json.loads(body)['components']['schemas']['SuggestResponse'])
