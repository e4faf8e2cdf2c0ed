"""TF Serving's REST predict API, as JSON <-> arrays: clients written for TF Serving work against serving.app.

Request  {"signature_name": S?, "instances": [...]}  (row format) or {"signature_name": S?, "inputs": ...}
         (columnar). With one input an instance is the value itself, else {input name: value}. Binary values
         are {"b64": "..."}.
Response {"predictions": [...]} (row) or {"outputs": ...} (columnar); with one output the values stand alone,
         else {output name: value}. String outputs whose name ends in "_bytes" come back as {"b64": "..."}.
Errors   {"error": "..."} with a 4xx status, as TF Serving answers.
(https://www.tensorflow.org/tfx/serving/api_rest describes the format.)
"""
import base64
import binascii
import dataclasses
import json

import numpy as np


class RequestError(ValueError):
  def __init__(self, message, status=400):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass
class PredictRequest:
  signature_name: str
  inputs: dict        # input name -> list of values (bytes for string inputs, numpy arrays otherwise)
  columnar: bool


def _decode_value(value, spec, where):
  if spec.dtype.name == 'string':
    if isinstance(value, dict) and set(value) == {'b64'} and isinstance(value['b64'], str):
      try:
        return base64.b64decode(value['b64'], validate=True)
      except (binascii.Error, ValueError) as e:
        raise RequestError(f'{where}: malformed base64 ({e}); encode the file with standard base64 '
                           '(e.g. base64.b64encode(data).decode())') from None
    if isinstance(value, str):
      return value.encode()
    raise RequestError(f'{where}: expected {{"b64": "<base64 of the image file>"}}, got {type(value).__name__}')
  try:
    array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
  except (TypeError, ValueError) as e:
    raise RequestError(f'{where}: not a {spec.dtype.name} tensor ({e})') from None
  expected = spec.shape[1:]
  if array.shape == (0,) and expected.rank and expected.rank > 1:   # [] for "none of them", e.g. no hints
    array = array.reshape([0] + [d or 0 for d in expected.as_list()[1:]])
  if not expected.is_compatible_with(array.shape):
    raise RequestError(f'{where}: shape {list(array.shape)}, the signature takes {expected.as_list()} '
                       '(None: any size)')
  return array


def _named(value, names, where):
  """A value for a signature with these input names -> {name: value}."""
  if len(names) == 1 and not (isinstance(value, dict) and set(value) == set(names)):
    return {names[0]: value}
  if not isinstance(value, dict) or set(value) != set(names):
    raise RequestError(f'{where}: expected an object with the inputs {sorted(names)}')
  return value


def parse_predict(body, input_specs):
  """Request body (bytes) -> PredictRequest; input_specs: {signature name: {input name: TensorSpec}}."""
  if not body:
    raise RequestError('empty request body: send JSON such as {"instances": [{"b64": "<base64 of a photo>"}]}')
  try:
    request = json.loads(body)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise RequestError(f'the request body is not JSON ({e}); send {{"instances": [{{"b64": "..."}}]}}') from None
  if not isinstance(request, dict):
    raise RequestError('the request body must be a JSON object with "instances" or "inputs"')
  name = request.get('signature_name') or 'serving_default'
  if name not in input_specs:
    raise RequestError(f'unknown signature_name {name!r}; this model has {", ".join(sorted(input_specs))}')
  specs = input_specs[name]
  names = sorted(specs)
  if ('instances' in request) == ('inputs' in request):
    raise RequestError('the request must have exactly one of "instances" (row format) or "inputs" (columnar)')
  if 'instances' in request:
    instances = request['instances']
    if not isinstance(instances, list) or not instances:
      raise RequestError('"instances" must be a non-empty list, one entry per image')
    columns = {n: [] for n in names}
    for i, instance in enumerate(instances):
      for n, v in _named(instance, names, f'instances[{i}]').items():
        columns[n].append(_decode_value(v, specs[n], f'instances[{i}]' + (f'.{n}' if len(names) > 1 else '')))
    return PredictRequest(name, columns, columnar=False)
  columns = {}
  for n, values in _named(request['inputs'], names, 'inputs').items():
    if not isinstance(values, list) or not values:
      raise RequestError(f'inputs.{n} must be a non-empty list (a batch)')
    columns[n] = [_decode_value(v, specs[n], f'inputs.{n}[{i}]') for i, v in enumerate(values)]
  if len({len(v) for v in columns.values()}) != 1:
    raise RequestError('all inputs must have the same batch size')
  return PredictRequest(name, columns, columnar=True)


def _encode(name, value):
  if isinstance(value, bytes):
    return {'b64': base64.b64encode(value).decode()} if name.endswith('_bytes') else value.decode(errors='replace')
  return value.tolist() if isinstance(value, np.ndarray) else value


def format_predict(outputs, columnar):
  """{output name: list or array over the batch} -> TF Serving's response object."""
  names = sorted(outputs)
  if columnar:
    cols = {n: [_encode(n, v) for v in outputs[n]] for n in names}
    return {'outputs': cols[names[0]] if len(names) == 1 else cols}
  rows = [{n: _encode(n, outputs[n][i]) for n in names} for i in range(len(outputs[names[0]]))]
  return {'predictions': [r[names[0]] for r in rows] if len(names) == 1 else rows}
