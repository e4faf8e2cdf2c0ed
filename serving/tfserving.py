"""TF Serving's REST API, all of it in one place, so that clients written for TF Serving work against serving.app.

Request  {"signature_name": S?, "instances": [...]}  (row format) or {"signature_name": S?, "inputs": ...}
         (columnar). With one input an instance is the value itself, else {input name: value}. Binary values
         are {"b64": "..."}.
Response {"predictions": [...]} (row) or {"outputs": ...} (columnar); with one output the values stand alone,
         else {output name: value}. String outputs whose name ends in "_bytes" come back as {"b64": "..."}.
Errors   {"error": "..."} with a 4xx status, as TF Serving answers (serving/app.py maps the kinds of
         serving/errors.py raised here to statuses).
Also the model's status and metadata (signature defs), the NAME[/versions/V][:verb] paths, and the tensor form of
hints (points, colours, radius, at), which go through the checks of serving/user_hints.py like every other hint,
and of colour strengths (strength), checked as the upload route's.
(https://www.tensorflow.org/tfx/serving/api_rest describes the format.)
"""
import base64
import binascii
import dataclasses
import json

import numpy as np
from tensorflow.core.framework import types_pb2

from serving import errors, exported, user_hints


@dataclasses.dataclass
class PredictRequest:
  signature_name: str
  inputs: dict        # input name -> list of values (bytes for string inputs, numpy arrays otherwise)
  columnar: bool


# -------------------------------------------------------------- request and response bodies

def _decode_value(value, spec, where):
  if spec.dtype.name == 'string':
    if isinstance(value, dict) and set(value) == {'b64'} and isinstance(value['b64'], str):
      try:
        return base64.b64decode(value['b64'], validate=True)
      except (binascii.Error, ValueError) as e:
        raise errors.BadInput(f'{where}: malformed base64 ({e}); encode the file with standard base64 '
                              '(e.g. base64.b64encode(data).decode())') from None
    if isinstance(value, str):
      return value.encode()
    raise errors.BadInput(f'{where}: expected {{"b64": "<base64 of the image file>"}}, got {type(value).__name__}')
  try:
    array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
  except (TypeError, ValueError) as e:
    raise errors.BadInput(f'{where}: not a {spec.dtype.name} tensor ({e})') from None
  expected = spec.shape[1:]
  if array.shape == (0,) and expected.rank and expected.rank > 1:   # [] for "none of them", e.g. no hints
    array = array.reshape([0] + [d or 0 for d in expected.as_list()[1:]])
  if not expected.is_compatible_with(array.shape):
    raise errors.BadInput(f'{where}: shape {list(array.shape)}, the signature takes {expected.as_list()} '
                          '(None: any size)')
  return array


def _named(value, names, where):
  """A value for a signature with these input names -> {name: value}."""
  if len(names) == 1 and not (isinstance(value, dict) and set(value) == set(names)):
    return {names[0]: value}
  if not isinstance(value, dict) or set(value) != set(names):
    raise errors.BadInput(f'{where}: expected an object with the inputs {sorted(names)}')
  return value


def input_specs(colorizer):
  """{signature name: {input name: TensorSpec}} of the loaded signatures, as parse_predict takes them."""
  return {n: colorizer.signature(n).structured_input_signature[1] for n in colorizer.signature_names}


def parse_predict(body, specs_by_signature):
  """Request body (bytes) -> PredictRequest; specs_by_signature: input_specs(colorizer)."""
  if not body:
    raise errors.BadInput('empty request body: send JSON such as {"instances": [{"b64": "<base64 of a photo>"}]}')
  try:
    request = json.loads(body)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.BadInput(f'the request body is not JSON ({e}); send {{"instances": [{{"b64": "..."}}]}}') from None
  if not isinstance(request, dict):
    raise errors.BadInput('the request body must be a JSON object with "instances" or "inputs"')
  name = request.get('signature_name') or 'serving_default'
  if name not in specs_by_signature:
    raise errors.BadInput(f'unknown signature_name {name!r}; this model has {", ".join(sorted(specs_by_signature))}')
  specs = specs_by_signature[name]
  names = sorted(specs)
  if ('instances' in request) == ('inputs' in request):
    raise errors.BadInput('the request must have exactly one of "instances" (row format) or "inputs" (columnar)')
  if 'instances' in request:
    instances = request['instances']
    if not isinstance(instances, list) or not instances:
      raise errors.BadInput('"instances" must be a non-empty list, one entry per image')
    columns = {n: [] for n in names}
    for i, instance in enumerate(instances):
      for n, v in _named(instance, names, f'instances[{i}]').items():
        columns[n].append(_decode_value(v, specs[n], f'instances[{i}]' + (f'.{n}' if len(names) > 1 else '')))
    return PredictRequest(name, columns, columnar=False)
  columns = {}
  for n, values in _named(request['inputs'], names, 'inputs').items():
    if not isinstance(values, list) or not values:
      raise errors.BadInput(f'inputs.{n} must be a non-empty list (a batch)')
    columns[n] = [_decode_value(v, specs[n], f'inputs.{n}[{i}]') for i, v in enumerate(values)]
  if len({len(v) for v in columns.values()}) != 1:
    raise errors.BadInput('all inputs must have the same batch size')
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


def _answer(outputs, columnar):
  return json.dumps(format_predict(outputs, columnar)).encode()


# -------------------------------------------------------------- hints as tensors

def where(request, name, i, j=None):
  """How the client names value j of input `name` of instance i: instances[i].points[j] or inputs.points[i][j]."""
  at = f'inputs.{name}[{i}]' if request.columnar else f'instances[{i}].{name}'
  return at if j is None else f'{at}[{j}]'


def tensor_hints(request, i):
  """Instance i's points, colours and radius (as colorize_hints takes them) -> [Hint], checked by user_hints.make
  as every hint is, naming the value (instances[i].points[j]); (-1, -1) points are padding and left out."""
  points, colours, radius = (request.inputs[n][i] for n in ('points', 'colours', 'radius'))
  k = len(points)
  user_hints.check_count(k, where(request, 'points', i), 'points', padded=True)
  if len(colours) != k or len(radius) != k:
    raise user_hints.HintError(f'{where(request, "points", i)}: {k} points, but {len(colours)} colours and '
                               f'{len(radius)} radii: give each point a colour and a radius (0: the default)')
  hints = []
  for j in range(k):
    x, y = points[j]
    if (x, y) == user_hints.PADDING:
      continue
    hints.append(user_hints.make(x, y, colours[j], radius[j], lambda field, j=j: where(request, field, i, j),
                                 padded=True))
  return hints


def tensor_points(request, i):
  """Instance i's `at` points (suggest_colours), checked: 1 to MAX_HINTS of them, inside the photo."""
  at = request.inputs['at'][i]
  if not 1 <= len(at) <= user_hints.MAX_HINTS:
    raise user_hints.HintError(f'{where(request, "at", i)}: {len(at)} points; ask about 1 to '
                               f'{user_hints.MAX_HINTS}')
  for j, (x, y) in enumerate(at):
    user_hints.check_point(x, y, where(request, 'at', i, j))
  return at


def strengths(svc, request):
  """Every instance's colour strength (the *_strength signatures), checked as the upload route's, named
  instances[i].strength (inputs.strength[i])."""
  return [svc.check_strength(value[()], where(request, 'strength', i))
          for i, value in enumerate(request.inputs['strength'])]


def _all_hints(request, at=False):
  """Every instance's hints (and `at` points), checked: [[Hint]] (and [points])."""
  n = len(request.inputs['image_bytes'])
  hints = [tensor_hints(request, i) for i in range(n)]
  return (hints, [tensor_points(request, i) for i in range(n)]) if at else hints


def _suggest_colours(colorizer, images, hints, at):
  """suggest_colours on prepared images, hints and points of varying counts (padded, then cut back)."""
  points, colours, radius = user_hints.arrays(hints)
  m = max(len(a) for a in at)
  asked = np.full([len(at), m, 2], 0.5, np.float32)
  for i, a in enumerate(at):
    asked[i, :len(a)] = a
  out = colorizer.run('suggest_colours', image_bytes=images, points=points, colours=colours, radius=radius,
                      at=asked)
  return {k: [v[i, :len(a)] for i, a in enumerate(at)] for k, v in out.items()}


# -------------------------------------------------------------- predict, by signature

async def predict(svc, body):
  """TF Serving's predict on a serving.service.Service: request body bytes -> response body bytes (JSON)."""
  request = await svc.off_loop('reading the request', parse_predict, body, svc.input_specs)
  name = request.signature_name
  images = request.inputs.get('image_bytes')
  if name in exported.IMAGE_SIGNATURES:   # image signatures: checked, limited and batched like uploads
    fmt, hinted, strong = exported.IMAGE_SIGNATURES[name]
    # each instance's hints checked (and their padding dropped), its strength checked
    hints = await svc.off_loop('reading the hints', _all_hints, request) if hinted else None
    strength = strengths(svc, request) if strong else None

    def named(i):   # image i as the client names it: the instance itself when image_bytes is the only input
      if hinted or strong:
        return where(request, 'image_bytes', i)
      return f'{"inputs.image_bytes" if request.columnar else "instances"}[{i}]'
    images, _ = await svc.colorize(images, fmt, named, hints=hints, strength=strength)
    outputs = {'image_bytes': images}
  elif name == 'suggest_colours':
    hints, at = await svc.off_loop('reading the hints', _all_hints, request, True)
    outputs = await svc.call(lambda data: _suggest_colours(svc.colorizer, data, hints, at), name,
                             images, lambda i: where(request, 'image_bytes', i))
  else:   # raw: tensors in, tensors out
    outputs = await svc.call(lambda _: svc.colorizer.run(name, **request.inputs), name)
  return await svc.off_loop('writing the answer', _answer, outputs, request.columnar)


# -------------------------------------------------------------- model status and metadata

def verb(svc, name, version):
  """The verb of a NAME[:verb] or NAME/versions/V[:verb] path, once the model it names is the one served."""
  if version is None:
    name, _, verb_ = name.partition(':')
  else:
    version, _, verb_ = version.partition(':')
    if not version.isdigit():
      raise errors.NotFound(f'no such version: {version} (versions are numbers)')
  if name != svc.name or (version is not None and int(version) != svc.colorizer.version):
    spec = f'Specific({name}, {version})' if version is not None else f'Latest({name})'
    raise errors.NotFound(f'Servable not found for request: {spec} (this server has {svc.name}, '
                          f'version {svc.colorizer.version})')
  return verb_


def check_predict(verb_):
  if verb_ != 'predict':
    kind = errors.Unsupported if verb_ else errors.NotAllowed
    raise kind(f'{verb_ or "metadata"} is not supported: this server answers POST /v1/models/NAME:predict')


def status(colorizer):
  return {'model_version_status': [{'version': str(colorizer.version), 'state': 'AVAILABLE',
                                    'status': {'error_code': 'OK', 'error_message': ''}}]}


def metadata(name, colorizer):
  return {'model_spec': {'name': name, 'signature_name': '', 'version': str(colorizer.version)},
          'metadata': {'signature_def': {'signature_def': signature_defs(colorizer)}},
          'colorizer': colorizer.info}


def signature_defs(colorizer):
  """TF Serving's signature_def map (GET /v1/models/NAME/metadata) for the loaded signatures."""
  def tensors(specs):   # dtypes by their DataType names, as TF Serving gives them (float32 is DT_FLOAT)
    return {k: {'dtype': types_pb2.DataType.Name(s.dtype.as_datatype_enum), 'name': k,
                'tensor_shape': {'dim': [{'size': str(-1 if d is None else d), 'name': ''} for d in s.shape],
                                 'unknown_rank': False}}
            for k, s in specs.items()}
  defs = {}
  for name in colorizer.signature_names:
    fn = colorizer.signature(name)
    defs[name] = {'inputs': tensors(fn.structured_input_signature[1]),
                  'outputs': tensors(fn.structured_outputs),
                  'method_name': 'tensorflow/serving/predict'}
  return defs
