r"""The colorizer behind a web page and a REST API (FastAPI on uvicorn; serving/server.py).

  python -m serving.app --model EXPORT_DIR [--host 127.0.0.1] [--port 8501] [--model-name colorizer]

  GET  /                                       the web page: drop a black-and-white photo, get it in colour
  POST /v1/colorize[?format=png][&hints=JSON]  body: an image file -> image/jpeg (or image/png), same size;
                                               hints (or the X-Colorizer-Hints header): the user's colours
  POST /v1/colorize/suggest?x=X&y=Y[&hints=]   body: an image file -> the likeliest colours at (x, y) (JSON)
  POST /v1/models/NAME[/versions/V]:predict    TF Serving's predict API (JSON, {"b64": ...} for bytes)
  GET  /v1/models/NAME[/versions/V]            TF Serving's model status
  GET  /v1/models/NAME[/versions/V]/metadata   signature defs (TF Serving's) and the model's colorizer.json
  GET  /healthz                                {"status": "ok", ...} once the model is loaded and warm
  GET  /openapi.json                           the REST API described in OpenAPI 3

Errors are {"error": "..."} with a 4xx/5xx status (TF Serving's form). The limits and time-outs are in
serving/service.py (model work) and serving/server.py (connections); bodies are read here, within a deadline.
"""
import asyncio
import contextlib
import importlib.resources
import json

from pipeline import quiet

tf = quiet.tensorflow()

import fastapi
import pydantic
from absl import app as absl_app, flags, logging
from fastapi import exceptions as fastapi_exceptions, responses
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import hints as hints_lib, model, server, service
from serving.service import HttpError, Service   # noqa: F401  (the names callers use)

BODY_TIMEOUT = 30.0   # seconds a client may take to send its body (20 MiB at 5.6 Mbit/s)
STATIC_TYPES = {'.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8',
                '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png'}
IMAGE_TYPES = {'jpeg': 'image/jpeg', 'png': 'image/png'}
# The page loads nothing from elsewhere; say so to the browser as well.
CSP = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'"
CLOSE = {'Connection': 'close'}   # for answers given before the body was read: the connection cannot be reused


# -------------------------------------------------------------- the API's schema (documentation only)

class B64(pydantic.BaseModel):
  b64: str = pydantic.Field(description='standard base64 of the image file (JPEG, PNG, GIF, BMP, TIFF, WebP)')


class PredictRequest(pydantic.BaseModel):
  """TF Serving's predict request: exactly one of `instances` (rows) or `inputs` (columns)."""
  signature_name: str = pydantic.Field('serving_default', description='serving_default (JPEG out), '
                                       'colorize_png (PNG out), raw (L canvas in, ab out); with --hints also '
                                       'colorize_hints, colorize_hints_png and suggest_colours (see the metadata)')
  instances: list | None = pydantic.Field(None, description='one entry per image: {"b64": ...} '
                                          '(or {"image_bytes": {"b64": ...}}); for raw, [S, S, 1] L canvases; for '
                                          'colorize_hints {"image_bytes": {"b64": ...}, "points": [[x, y], ...], '
                                          '"colours": [[r, g, b], ...], "radius": [r, ...]} (+ "at" for '
                                          'suggest_colours)')
  inputs: dict | list | None = pydantic.Field(None, description='columnar: {"image_bytes": [{"b64": ...}, ...]}')


class PredictResponse(pydantic.BaseModel):
  predictions: list[B64] | None = pydantic.Field(None, description='row format: one {"b64": ...} per image')
  outputs: list[B64] | dict | None = pydantic.Field(None, description='columnar format')


class Suggestion(pydantic.BaseModel):
  colour: str = pydantic.Field(description='#rrggbb (sRGB, at the photo\'s lightness there)')
  probability: float = pydantic.Field(description='the model\'s probability of this colour there (0..1)')


class SuggestResponse(pydantic.BaseModel):
  x: float
  y: float
  palette: list[Suggestion] = pydantic.Field(description='the likeliest distinct colours, likeliest first')


class Error(pydantic.BaseModel):
  error: str = pydantic.Field(description='what was wrong and what to do about it')


ERRORS = {s: {'model': Error} for s in (400, 404, 408, 411, 413, 503)}
IMAGE_BODY = {'requestBody': {'required': True, 'description': 'the image file itself (at most --max-bytes)',
                              'content': {t: {'schema': {'type': 'string', 'format': 'binary'}}
                                          for t in ('image/jpeg', 'image/png', 'application/octet-stream')}}}
HINTS_DOC = ('the user\'s colours, a JSON list of hints: [{"x": 0.5, "y": 0.2, "colour": "#3060c0"}, ...] (x, y '
             f'from 0 to 1 from the photo\'s left and top edges; colour #RRGGBB or [r, g, b]; optional "radius", a '
             f'share of the long side, 0..0.25; at most {hints_lib.MAX_HINTS}). For models trained with --hints '
             '(GET /healthz says "hints": true).')
HINTS_HEADER_DOC = 'the same as the hints parameter (simpler with curl: no URL encoding); send one of the two'
JSON_BODY = {'requestBody': {'required': True, 'content': {'application/json': {
    'schema': PredictRequest.model_json_schema()}}}}


# -------------------------------------------------------------- reading bodies within limits

DRAIN = 4   # an over-limit body up to DRAIN x the limit is read and dropped (not kept), so the client sees the 413


@contextlib.asynccontextmanager
async def body_of(request, limit, budget, timeout=BODY_TIMEOUT):
  """`async with body_of(...) as body`: the request body, counted against the server's budget of buffered
  bytes while the request is handled; HttpError 413 past `limit` bytes (announced or sent), 408 past `timeout`
  seconds, 503 when the budget is spent (many large uploads at once).

  A client still sending when the server answers gets a broken pipe instead of the answer (Python's http.client
  does), so a body somewhat over the limit is read to its end and dropped; a larger one is answered at once, and
  the connection closed."""
  length = request.headers.get('content-length')   # h11 has checked that it is a non-negative number
  too_large = HttpError(413, f'the request body has {length or "more than " + str(limit)} bytes, over this '
                        f'server\'s limit of {limit}: send a smaller file (or start the server with a larger '
                        '--max-bytes)')
  if length is not None and int(length) > DRAIN * limit:
    too_large.close = True
    raise too_large
  chunks, size, taken = [], 0, 0

  async def receive():
    nonlocal size, taken
    async for chunk in request.stream():
      size += len(chunk)
      if size > DRAIN * limit:   # chunked: no length to check up front
        too_large.close = True
        break
      if size <= limit:
        budget.take(len(chunk))   # counted as it arrives: a client that sends nothing holds nothing
        taken += len(chunk)
        chunks.append(chunk)
  try:
    try:
      await asyncio.wait_for(receive(), timeout)
    except asyncio.TimeoutError:
      raise HttpError(408, f'the request body did not arrive within {timeout:.0f} s ({size} of '
                      f'{length or "?"} bytes came): send it faster, or check the Content-Length header') from None
    except HttpError as e:   # the budget is spent: the rest of the body is still on the wire
      e.close = True
      raise
    if size > limit:
      raise too_large
    body = b''.join(chunks)
    chunks.clear()
    yield body
  finally:
    budget.give(taken)


RETRY_AFTER = '1'   # seconds a client told 503 (busy, out of memory, too slow) should wait before it retries


def error_response(status, message, close=False):
  headers = dict(CLOSE if close else {}, **({'Retry-After': RETRY_AFTER} if status == 503 else {}))
  return responses.JSONResponse({'error': message}, status, headers=headers or None)


# -------------------------------------------------------------- the app

def make_app(svc, body_timeout=BODY_TIMEOUT):
  """The FastAPI app of a Service: the page, the upload endpoint and TF Serving's REST API."""
  api = fastapi.FastAPI(title='Colorizer', version=str(svc.colorizer.version), docs_url=None, redoc_url=None,
                        description='Greyscale photos in, colour photos out, at their own size. TF Serving\'s '
                        'REST API (predict, status, metadata) and a plain upload endpoint.')
  static = {p.name: p for p in (importlib.resources.files('serving') / 'static').iterdir()}

  @api.exception_handler(HttpError)
  async def _http_error(request, e):
    # An error answered before the body was read leaves it on the wire: close rather than parse it as a request.
    return error_response(e.status, str(e), close=getattr(e, 'close', e.status == 408))

  @api.exception_handler(StarletteHTTPException)
  async def _not_found(request, e):
    if e.status_code == 404:
      return error_response(404, f'no such endpoint: {request.method} {request.url.path} (see / for the page, '
                            '/openapi.json for the API)')
    if e.status_code == 405:
      return error_response(405, f'{request.method} is not allowed on {request.url.path}')
    return error_response(e.status_code, str(e.detail))

  @api.exception_handler(fastapi_exceptions.RequestValidationError)
  async def _invalid(request, e):
    return error_response(400, '; '.join(f'{".".join(map(str, err["loc"]))}: {err["msg"]}' for err in e.errors()))

  @api.exception_handler(Exception)
  async def _bug(request, e):   # a bug must not take the server down: answer 500 and log it
    logging.error('internal error on %s %s', request.method, request.url.path, exc_info=e)
    return error_response(500, f'internal error: {type(e).__name__}: {e}', close=True)

  def static_file(name):
    path = static.get(name)
    if path is None:
      raise HttpError(404, f'no static file {name}')
    return fastapi.Response(path.read_bytes(), media_type=STATIC_TYPES.get('.' + name.rsplit('.', 1)[-1],
                                                                           'application/octet-stream'),
                            headers={'Content-Security-Policy': CSP, 'Cache-Control': 'no-cache'})

  @api.get('/', include_in_schema=False)
  async def page():
    return static_file('index.html')

  @api.get('/static/{name}', include_in_schema=False)
  async def static_route(name: str):
    return static_file(name)

  @api.get('/healthz', summary='Liveness and limits', tags=['server'])
  async def health():
    return svc.health()

  def user_hints(query, header):
    """The hints of an upload (query parameter or header) -> [Hint], checked; HttpError 400 naming the hint."""
    if query is not None and header is not None:
      raise HttpError(400, 'hints came both as a query parameter and as the X-Colorizer-Hints header: send one')
    text, where = (query, 'hints') if header is None else (header, 'X-Colorizer-Hints')
    if text is None or not text.strip():
      return []
    try:
      value = json.loads(text)
    except json.JSONDecodeError as e:
      raise HttpError(400, f'{where}: not JSON ({e}); send a list like '
                      '[{"x": 0.5, "y": 0.2, "colour": "#3060c0"}]') from None
    try:
      hints = hints_lib.from_json(value, where)
    except hints_lib.HintError as e:
      raise HttpError(400, str(e)) from None
    svc.check_hints([hints], where)
    return hints

  def empty_upload(route):
    return HttpError(400, 'empty request body: send the image file as the body, e.g. '
                     f'curl --data-binary @photo.jpg -o colour.jpg http://HOST:PORT{route}')

  @api.post('/v1/colorize', summary='Colour one photo', tags=['colorize'], responses={
      200: {'content': {'image/jpeg': {}, 'image/png': {}}, 'description': 'the photo in colour, same size'},
      **ERRORS}, response_class=fastapi.Response, openapi_extra=IMAGE_BODY)
  async def upload(request: fastapi.Request, format: str = fastapi.Query('jpeg', description='jpeg or png'),
                   hints: str | None = fastapi.Query(None, description=HINTS_DOC),
                   x_colorizer_hints: str | None = fastapi.Header(None, description=HINTS_HEADER_DOC)):
    """The body is an image file; the answer is the same photo in colour at its own size. If the photo already
    had colour, the header X-Colorizer-Note says so (its colour is replaced by one predicted from its L).

    With hints the model follows the user's colours: each hint says "this colour here", e.g.
    `curl --data-binary @photo.jpg -H 'X-Colorizer-Hints: [{"x": 0.5, "y": 0.2, "colour": "#3060c0"}]'
    -o colour.jpg http://HOST:PORT/v1/colorize`. A malformed hint is answered 400 naming it
    (`hints[2]: colour '#zz' is not #RRGGBB ...`); so are hints sent to a model trained without them."""
    fmt = format.lower().replace('jpg', 'jpeg')
    if fmt not in model.FORMATS:
      raise HttpError(400, f'format={format} is not offered; use format=jpeg or format=png')
    async with body_of(request, svc.max_bytes, svc.buffered, body_timeout) as body:
      # The hints are checked once the body is in: a client still sending would not see an earlier answer.
      checked = user_hints(hints, x_colorizer_hints)
      if not body:
        raise empty_upload('/v1/colorize')
      (image,), colour = await svc.colorize([body], fmt, lambda i: 'the upload', check_colour=True,
                                            hints=[checked])
    headers = {'Content-Disposition': f'inline; filename="colour.{"jpg" if fmt == "jpeg" else "png"}"'}
    if colour:
      headers['X-Colorizer-Note'] = ('the photo already had colour (or a tint): it was replaced by colour '
                                     'predicted from its lightness (L)')
    return fastapi.Response(image, media_type=IMAGE_TYPES[fmt], headers=headers)

  @api.post('/v1/colorize/suggest', summary='Suggest colours at a point', tags=['colorize'],
            response_model=SuggestResponse, responses=ERRORS, openapi_extra=IMAGE_BODY)
  async def suggest(request: fastapi.Request,
                    x: float = fastapi.Query(description='0..1 from the photo\'s left edge'),
                    y: float = fastapi.Query(description='0..1 from the photo\'s top edge'),
                    hints: str | None = fastapi.Query(None, description=HINTS_DOC),
                    x_colorizer_hints: str | None = fastapi.Header(None, description=HINTS_HEADER_DOC)):
    """The body is an image file; the answer is the model's likeliest distinct colours at (x, y), given the
    hints already placed: `{"x": 0.3, "y": 0.6, "palette": [{"colour": "#3a6ea5", "probability": 0.41}, ...]}`
    (six, likeliest first; the probabilities of the six sum to at most 1). For models trained with the
    classification loss (GET /healthz says "suggests": true); others are answered 400."""
    for name, value in (('x', x), ('y', y)):
      if not 0.0 <= value <= 1.0:
        raise HttpError(400, f'{name}={value:g} is outside the photo: x and y go from 0 to 1 (left to right, top '
                        'to bottom)')
    async with body_of(request, svc.max_bytes, svc.buffered, body_timeout) as body:
      checked = user_hints(hints, x_colorizer_hints)
      if not body:
        raise empty_upload('/v1/colorize/suggest?x=0.5&y=0.5')
      (palette,) = await svc.suggest(body, [(x, y)], checked, 'the upload')
    return {'x': x, 'y': y, 'palette': [{'colour': '#%02x%02x%02x' % tuple(rgb), 'probability': round(p, 6)}
                                        for rgb, p in palette]}

  def model_path(name, version):
    """The verb of TF Serving's NAME[/versions/V][:verb] path, whose model is checked against the loaded one."""
    if version is None:
      name, _, verb = name.partition(':')
    else:
      version, _, verb = version.partition(':')
      if not version.isdigit():
        raise HttpError(404, f'no such version: {version} (versions are numbers)')
    svc.check_model(name, version)
    return verb

  async def predict(request, name, version, verb=None):
    """verb: 'predict' from the route, or None: parse it from the path (NAME:verb)."""
    if verb is None:
      verb = model_path(name, version)
    else:
      model_path(name, version)
    if verb != 'predict':
      raise HttpError(400 if verb else 405, f'{verb or "metadata"} is not supported: this server answers '
                      'POST /v1/models/NAME:predict')
    async with body_of(request, svc.max_body, svc.buffered, body_timeout) as body:
      return fastapi.Response(await svc.predict(body), media_type='application/json')

  async def status(name, version, metadata=False):
    verb = model_path(name, version)
    if verb:
      raise HttpError(405, f'{verb} needs POST')
    return svc.metadata() if metadata else svc.status()

  predict_doc = dict(tags=['TF Serving'], response_model=PredictResponse, responses=ERRORS,
                     openapi_extra=JSON_BODY, summary='TF Serving predict')

  @api.post('/v1/models/{name}:predict', **predict_doc)
  async def predict_latest(request: fastapi.Request, name: str):
    """`{"instances": [{"b64": "<base64 of a photo>"}]}` -> `{"predictions": [{"b64": "<base64 of a JPEG>"}]}`.
    `signature_name` colorize_png answers PNG; raw takes L canvases and answers ab (see the metadata).
    Models trained with --hints also have colorize_hints (and colorize_hints_png): `{"signature_name":
    "colorize_hints", "instances": [{"image_bytes": {"b64": ...}, "points": [[x, y], ...], "colours":
    [[r, g, b], ...], "radius": [0, ...]}]}` (x, y in 0..1; (-1, -1) pads; colours 0..255; radius 0..0.25, 0: the
    default); classification models suggest_colours (the same plus "at": [[x, y], ...]) -> colours, probabilities.
    Malformed hints are answered 400 naming them: `instances[0].points[2]: (1.5, 0.2) is outside the photo`."""
    return await predict(request, name, None, 'predict')

  @api.post('/v1/models/{name}/versions/{version}:predict', **predict_doc)
  async def predict_version(request: fastapi.Request, name: str, version: str):
    return await predict(request, name, version, 'predict')

  @api.post('/v1/models/{name}', include_in_schema=False)   # NAME:classify and the like: not offered
  async def other_verb(request: fastapi.Request, name: str):
    return await predict(request, name, None)

  @api.get('/v1/models/{name}', tags=['TF Serving'], summary='Model status')
  async def status_latest(name: str):
    return await status(name, None)

  @api.get('/v1/models/{name}/versions/{version}', tags=['TF Serving'], summary='Model status')
  async def status_version(name: str, version: str):
    return await status(name, version)

  @api.get('/v1/models/{name}/metadata', tags=['TF Serving'], summary='Signatures and colorizer.json')
  async def metadata_latest(name: str):
    return await status(name, None, metadata=True)

  @api.get('/v1/models/{name}/versions/{version}/metadata', tags=['TF Serving'], summary='Signatures')
  async def metadata_version(name: str, version: str):
    return await status(name, version, metadata=True)

  return api


def warm_up(colorizer):
  """One call of each image signature (with hints too), so the first user does not wait for TF's graph start-up."""
  import numpy as np
  probe = tf.io.encode_png(np.full((32, 48, 3), 128, np.uint8)).numpy()
  hint = [hints_lib.make(0.5, 0.5, '#3060c0')]
  for fmt in model.FORMATS:
    colorizer.colorize([probe], fmt)
    if colorizer.takes_hints:
      colorizer.colorize([probe], fmt, hints=[hint])
  if colorizer.suggests:
    colorizer.suggest(probe, [(0.5, 0.5)], hint if colorizer.takes_hints else ())


FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags, defined only when run as a program (see serving.colorize.define_flags)."""
  flags.DEFINE_string('model', None, 'Export directory (TF Serving layout: DIR/<version>/saved_model.pb) or a '
                      'version directory.', required=True)
  flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every interface).')
  flags.DEFINE_integer('port', server.DEFAULT_PORT, 'Port to listen on.')
  flags.DEFINE_string('model-name', 'colorizer', 'The NAME in /v1/models/NAME, as TF Serving\'s --model_name.')
  flags.DEFINE_integer('max-bytes', service.DEFAULT_MAX_BYTES, 'Largest image upload, in bytes.')
  flags.DEFINE_integer('max-pixels', service.DEFAULT_MAX_PIXELS, 'Largest image, in pixels (width x height); '
                       'also the most pixels one model call takes.')
  flags.DEFINE_integer('max-batch', 8, 'Most images one model call takes from concurrent requests.')
  flags.DEFINE_integer('max-pending', 32, 'Requests with model work in progress beyond which the server answers '
                       '503.')
  flags.DEFINE_integer('max-buffered', service.DEFAULT_MAX_BUFFERED, 'Bytes of request bodies the server holds '
                       'at once (uploads in progress and being coloured); past it, 503.')
  flags.DEFINE_float('request-timeout', service.DEFAULT_TIMEOUT, 'Seconds a request may wait for the model '
                     'before it is answered 503.')
  flags.DEFINE_float('body-timeout', BODY_TIMEOUT, 'Seconds a client may take to send a request body (408 after).')
  flags.DEFINE_float('header-timeout', server.HEADER_TIMEOUT, 'Seconds a client may take to send its headers.')
  flags.DEFINE_float('keep-alive', server.KEEP_ALIVE, 'Seconds an idle connection is kept open.')
  flags.DEFINE_float('graceful', server.GRACEFUL, 'On SIGTERM, seconds requests in progress have to finish.')


def main(argv):
  if len(argv) > 1:
    raise absl_app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    colorizer = model.Colorizer(FLAGS.model)
  except model.ModelError as e:
    raise absl_app.UsageError(str(e)) from None
  warm_up(colorizer)
  svc = Service(colorizer, FLAGS['model-name'].value, FLAGS['max-bytes'].value, FLAGS['max-pixels'].value,
                FLAGS['max-batch'].value, FLAGS['max-pending'].value, FLAGS['request-timeout'].value,
                max_buffered=FLAGS['max-buffered'].value)
  logging.info('model %s version %d from %s', svc.name, colorizer.version, colorizer.path)
  print(f'Serving {colorizer.path} on http://{FLAGS.host}:{FLAGS.port}/ (REST: /v1/models/{svc.name}:predict, '
        'API: /openapi.json); Ctrl-C or SIGTERM stops', flush=True)
  server.run(make_app(svc, FLAGS['body-timeout'].value), FLAGS.host, FLAGS.port,
             header_timeout=FLAGS['header-timeout'].value, keep_alive=FLAGS['keep-alive'].value,
             graceful=FLAGS['graceful'].value)
  print('Stopped', flush=True)


if __name__ == '__main__':
  define_flags()
  absl_app.run(main)
