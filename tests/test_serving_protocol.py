"""TF Serving's protocol (serving/tfserving.py) without a server: request bodies in, hints out through the one hint
validation (serving/user_hints.py), responses out."""
import base64
import json

import numpy as np
import pytest
import tensorflow as tf

from serving import errors, tfserving, user_hints

HINT_SPECS = {'colorize_hints': {'image_bytes': tf.TensorSpec([None], tf.string),
                                 'points': tf.TensorSpec([None, None, 2], tf.float32),
                                 'colours': tf.TensorSpec([None, None, 3], tf.float32),
                                 'radius': tf.TensorSpec([None, None], tf.float32)},
              'raw': {'l': tf.TensorSpec([None, 4, 4, 1], tf.float32)}}
PHOTO = {'b64': base64.b64encode(b'a photo').decode()}


def parse(payload):
  return tfserving.parse_predict(json.dumps(payload).encode(), HINT_SPECS)


def instance(points, colours, radius):
  return {'image_bytes': PHOTO, 'points': points, 'colours': colours, 'radius': radius}


def test_tensor_hints_are_the_json_hints_with_padding_left_out():
  request = parse({'signature_name': 'colorize_hints', 'instances': [
      instance([[0.25, 0.75], [-1, -1], [0.5, 0.5]], [[42, 157, 58], [0, 0, 0], [48, 96, 192]], [0, 0, 0.05])]})
  want = user_hints.from_json([{'x': 0.25, 'y': 0.75, 'colour': '#2a9d3a'},
                               {'x': 0.5, 'y': 0.5, 'colour': [48, 96, 192], 'radius': 0.05}])
  got = tfserving.tensor_hints(request, 0)
  assert [(h.x, h.y, h.rgb) for h in got] == [(h.x, h.y, h.rgb) for h in want]
  assert got[1].radius == pytest.approx(want[1].radius)   # float32 on the wire
  # A tensor's colour is taken as the signature would take it (float32), not rounded to 8 bits as JSON's are.
  request = parse({'signature_name': 'colorize_hints', 'instances': [instance([[0.5, 0.5]], [[10.5, 20.25, 0]],
                                                                              [0])]})
  assert tfserving.tensor_hints(request, 0)[0].rgb == (10.5, 20.25, 0.0)
  assert user_hints.from_json([{'x': 0.5, 'y': 0.5, 'colour': [10.5, 20.25, 0]}])[0].rgb == (10, 20, 0)


# One bad value, as a JSON hint and as the same value in TF Serving's tensors: the same check refuses both, each
# message naming the value as its client wrote it.
@pytest.mark.parametrize('x, y, colour, radius, json_name, tensor_name, problem', [
    (1.5, 0.2, [48, 96, 192], 0, 'hints[0]: ', 'instances[0].points[0]: ', '(1.5, 0.2) is outside the photo'),
    (0.5, -0.1, [48, 96, 192], 0, 'hints[0]: ', 'instances[0].points[0]: ', '(0.5, -0.1) is outside the photo'),
    (0.5, 0.2, [48, 96, 256], 0, 'hints[0]: colour ', 'instances[0].colours[0]: ',
     '[48, 96, 256] is not an sRGB colour'),
    (0.5, 0.2, [48, 96, 192], 0.3, 'hints[0]: radius ', 'instances[0].radius[0]: ', '0.3 is not in 0..0.25'),
    (0.5, 0.2, [48, 96, 192], -0.1, 'hints[0]: radius ', 'instances[0].radius[0]: ', '-0.1 is not in 0..0.25'),
])
def test_a_bad_value_is_refused_by_the_same_check_in_both_forms(x, y, colour, radius, json_name, tensor_name,
                                                                problem):
  with pytest.raises(user_hints.HintError) as from_json:
    user_hints.from_json([{'x': x, 'y': y, 'colour': colour, 'radius': radius}])
  request = parse({'signature_name': 'colorize_hints', 'instances': [instance([[x, y]], [colour], [radius])]})
  with pytest.raises(user_hints.HintError) as from_tensors:
    tfserving.tensor_hints(request, 0)
  assert str(from_json.value).startswith(json_name + problem)
  assert str(from_tensors.value).startswith(tensor_name + problem)
  # the same words, and for a point, that (-1, -1) is the tensors' padding
  assert str(from_tensors.value)[len(tensor_name):].startswith(str(from_json.value)[len(json_name):])
  assert str(from_tensors.value).endswith('; (-1, -1) is padding') == problem.startswith('(')
  assert isinstance(from_tensors.value, errors.BadInput)   # a 400, as every malformed hint


def test_counts_and_columnar_names():
  many = user_hints.MAX_HINTS + 1
  request = parse({'signature_name': 'colorize_hints', 'instances': [instance([[0.5, 0.5]] * many,
                                                                              [[0, 0, 0]] * many, [0] * many)]})
  with pytest.raises(user_hints.HintError, match=f'instances\\[0\\].points: {many} points, more than the 100'):
    tfserving.tensor_hints(request, 0)
  with pytest.raises(user_hints.HintError, match=f'hints: {many} hints, more than the 100'):
    user_hints.from_json([{'x': 0.5, 'y': 0.5, 'colour': '#ffffff'}] * many)
  request = parse({'signature_name': 'colorize_hints', 'inputs': {
      'image_bytes': [PHOTO] * 2, 'points': [[[0.5, 0.5]], [[0.5, 7]]], 'colours': [[[0, 0, 0]]] * 2,
      'radius': [[0]] * 2}})
  assert request.columnar and tfserving.tensor_hints(request, 0)[0].x == 0.5
  with pytest.raises(user_hints.HintError, match=r'inputs.points\[1\]\[0\]: \(0.5, 7\) is outside'):
    tfserving.tensor_hints(request, 1)


def test_nan_is_not_a_number_in_either_form():
  request = parse({'signature_name': 'colorize_hints', 'instances': [instance([[0.5, 0.5]], [[1, 2, 3]], [0])]})
  request.inputs['points'][0][0, 0] = np.nan   # JSON has no NaN; a client's float32 array may
  with pytest.raises(user_hints.HintError, match=r'instances\[0\].points\[0\]: x is nan, not a number'):
    tfserving.tensor_hints(request, 0)
  with pytest.raises(user_hints.HintError, match=r'hints\[0\]: x is nan, not a number'):
    user_hints.from_json([{'x': float('nan'), 'y': 0.5, 'colour': '#ffffff'}])


def test_suggest_points_are_checked_as_hint_points():
  request = tfserving.PredictRequest('suggest_colours', {'image_bytes': [b''] * 2, 'at': [
      np.float32([[0.25, 0.5]]), np.float32([[0.5, 0.5], [0.5, 1.5]])]}, columnar=False)
  np.testing.assert_array_equal(tfserving.tensor_points(request, 0), [[0.25, 0.5]])
  with pytest.raises(user_hints.HintError, match=r'instances\[1\].at\[1\]: \(0.5, 1.5\) is outside the photo'):
    tfserving.tensor_points(request, 1)
  request.inputs['at'][0] = np.zeros([0, 2], np.float32)
  with pytest.raises(user_hints.HintError, match=r'instances\[0\].at: 0 points; ask about 1 to 100'):
    tfserving.tensor_points(request, 0)


@pytest.mark.parametrize('body, message', [
    (b'', 'empty request body'), (b'{', 'not JSON'), (b'[]', 'JSON object'),
    (b'{"signature_name": "raw", "instances": [1], "inputs": [1]}', 'exactly one'),
    (b'{"signature_name": "raw", "instances": [[1, 2]]}', 'instances[0]: shape [2], the signature takes [4, 4, 1]'),
    (b'{"signature_name": "colorize_hints", "instances": [{"b64": "eA=="}]}',
     'instances[0]: expected an object with the inputs'),
    (b'{"signature_name": "nope", "instances": [1]}', "unknown signature_name 'nope'; this model has "
     'colorize_hints, raw'),
])
def test_malformed_requests_are_bad_input(body, message):
  with pytest.raises(errors.BadInput) as e:
    tfserving.parse_predict(body, HINT_SPECS)
  assert message in str(e.value)


def test_responses_in_row_and_columnar_form():
  outputs = {'image_bytes': [b'one', b'two']}
  assert tfserving.format_predict(outputs, columnar=False) == {'predictions': [
      {'b64': base64.b64encode(b'one').decode()}, {'b64': base64.b64encode(b'two').decode()}]}
  two = {'colours': [np.zeros([1, 2, 3], np.uint8)], 'probabilities': [np.ones([1, 2], np.float32)]}
  assert tfserving.format_predict(two, columnar=True) == {'outputs': {
      'colours': [[[[0, 0, 0], [0, 0, 0]]]], 'probabilities': [[[1.0, 1.0]]]}}
  assert tfserving.format_predict(two, columnar=False) == {'predictions': [
      {'colours': [[[0, 0, 0], [0, 0, 0]]], 'probabilities': [[1.0, 1.0]]}]}
