r"""The colorizer behind a web page and a REST API (FastAPI on uvicorn; serving/server.py).

  python -m serving.app --model EXPORT_DIR [--host 127.0.0.1] [--port 8501] [--model-name colorizer]

  GET  /                                       the web page: drop a black-and-white photo, get it in colour
  POST /v1/colorize[?format=png][&hints=JSON][&strength=S]
                                               body: an image file -> image/jpeg (or image/png), same size;
                                               hints (or the X-Colorizer-Hints header): the user's colours;
                                               strength: the colour strength, 0 (palest) to 1 (most vivid)
  POST /v1/colorize/suggest?x=X&y=Y[&hints=]   body: an image file -> the likeliest colours at (x, y) (JSON)
  POST /v1/models/NAME[/versions/V]:predict    TF Serving's predict API (JSON, {"b64": ...} for bytes)
  GET  /v1/models/NAME[/versions/V]            TF Serving's model status
  GET  /v1/models/NAME[/versions/V]/metadata   signature defs (TF Serving's) and the model's colorizer.json
  GET  /healthz                                {"status": "ok", ...} once the model is loaded and warm
  GET  /openapi.json                           the REST API described in OpenAPI 3 (serving/api_schema.py)

This module only routes: TF Serving's protocol is serving/tfserving.py, the model work and its limits
serving/service.py, bodies are read by serving/bodies.py (within a deadline), connections are serving/server.py's.
Errors are {"error": "..."} with a 4xx/5xx status (TF Serving's form): the layers below raise the kinds of
serving/errors.py, and STATUS here is the one place that gives each its HTTP status.
"""
import dataclasses
import importlib.resources
import json
from typing import Optional

from pipeline import cli, quiet

quiet.tensorflow()

import fastapi
from absl import app as absl_app, logging
from fastapi import exceptions as fastapi_exceptions, responses
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import api_schema as schema, bodies, errors, exported, server, service, tfserving, user_hints
from serving.service import Service   # noqa: F401  (the name callers use)

STATIC_TYPES = {'.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8',
                '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png'}
IMAGE_TYPES = {'jpeg': 'image/jpeg', 'png': 'image/png'}
# The page loads nothing from elsewhere; say so to the browser as well.
CSP = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'"
CLOSE = {'Connection': 'close'}   # for answers given before the body was read: the connection cannot be reused
RETRY_AFTER = '1'   # seconds a client told 503 (busy, out of memory, too slow) should wait before it retries

# Each kind of error (serving/errors.py) and its HTTP status: the only place the layers below meet HTTP.
STATUS = {
    errors.BadInput: 400,      # the input is at fault (hints, JSON, base64, not an image, a tensor's shape)
    errors.Unsupported: 400,   # this model cannot do it (hints, suggestions), or this server (a verb)
    errors.NotFound: 404,      # no such model, version or file
    errors.NotAllowed: 405,
    errors.SlowClient: 408,
    errors.TooLarge: 413,
    errors.ServingError: 500,  # (a kind not listed here)
    errors.ModelFailed: 500,
    errors.Busy: 503,          # 503s say Retry-After: the server's state, not the request, is at fault
    errors.TimedOut: 503,
    errors.OutOfMemory: 503,
}


def status_of(error):
  """The HTTP status of a kind of error (or of a kind derived from one, e.g. user_hints.HintError)."""
  return next(STATUS[kind] for kind in type(error).__mro__ if kind in STATUS)


def error_response(status, message, close=False):
  headers = dict(CLOSE if close else {}, **({'Retry-After': RETRY_AFTER} if status == 503 else {}))
  return responses.JSONResponse({'error': message}, status, headers=headers or None)


# -------------------------------------------------------------- the app

def make_app(svc, body_timeout=bodies.BODY_TIMEOUT):
  """The FastAPI app of a Service: the page, the upload endpoint and TF Serving's REST API."""
  api = fastapi.FastAPI(title='Colorizer', version=str(svc.colorizer.version), docs_url=None, redoc_url=None,
                        description='Greyscale photos in, colour photos out, at their own size. TF Serving\'s '
                        'REST API (predict, status, metadata) and a plain upload endpoint.')
  static = {p.name: p for p in (importlib.resources.files('serving') / 'static').iterdir()}

  @api.exception_handler(errors.ServingError)
  async def _serving_error(request, e):
    # An error answered before the body was read leaves it on the wire: close rather than parse it as a request.
    return error_response(status_of(e), str(e), close=e.body_unread)

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
      raise errors.NotFound(f'no static file {name}')
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

  def hints_of(query, header):
    """The hints of an upload (query parameter or header) -> [Hint], checked; errors.BadInput naming the hint."""
    if query is not None and header is not None:
      raise errors.BadInput('hints came both as a query parameter and as the X-Colorizer-Hints header: send one')
    text, where = (query, 'hints') if header is None else (header, 'X-Colorizer-Hints')
    if text is None or not text.strip():
      return []
    try:
      value = json.loads(text)
    except json.JSONDecodeError as e:
      raise errors.BadInput(f'{where}: not JSON ({e}); send a list like '
                            '[{"x": 0.5, "y": 0.2, "colour": "#3060c0"}]') from None
    hints = user_hints.from_json(value, where)
    svc.check_hints([hints], where)
    return hints

  def empty_upload(route):
    return errors.BadInput('empty request body: send the image file as the body, e.g. '
                           f'curl --data-binary @photo.jpg -o colour.jpg http://HOST:PORT{route}')

  @api.post('/v1/colorize', summary='Colour one photo', tags=['colorize'], responses={
      200: {'content': {'image/jpeg': {}, 'image/png': {}}, 'description': 'the photo in colour, same size'},
      **schema.ERRORS}, response_class=fastapi.Response, openapi_extra=schema.IMAGE_BODY)
  async def upload(request: fastapi.Request, format: str = fastapi.Query('jpeg', description='jpeg or png'),
                   hints: str | None = fastapi.Query(None, description=schema.HINTS_DOC),
                   x_colorizer_hints: str | None = fastapi.Header(None, description=schema.HINTS_HEADER_DOC),
                   strength: float | None = fastapi.Query(None, description=schema.STRENGTH_DOC)):
    """The body is an image file; the answer is the same photo in colour at its own size. If the photo already
    had colour, the header X-Colorizer-Note says so (its colour is replaced by one predicted from its L).

    With hints the model follows the user's colours: each hint says "this colour here", e.g.
    `curl --data-binary @photo.jpg -H 'X-Colorizer-Hints: [{"x": 0.5, "y": 0.2, "colour": "#3060c0"}]'
    -o colour.jpg http://HOST:PORT/v1/colorize`. A malformed hint is answered 400 naming it
    (`hints[2]: colour '#zz' is not #RRGGBB ...`); so are hints sent to a model trained without them.

    With strength (0..1; with or without hints) the colours are paler (0: each colour as often as it occurs,
    the most accurate) or more vivid (1: near the likeliest colour) than the model's default (GET /healthz
    says "strength": the default, or null for a model without the control, which is answered 400)."""
    fmt = format.lower().replace('jpg', 'jpeg')
    if fmt not in exported.FORMATS:
      raise errors.BadInput(f'format={format} is not offered; use format=jpeg or format=png')
    async with bodies.body_of(request, svc.max_bytes, svc.buffered, body_timeout) as body:
      # The hints are checked once the body is in: a client still sending would not see an earlier answer.
      checked = hints_of(hints, x_colorizer_hints)
      strengths = None if strength is None else [svc.check_strength(strength)]
      if not body:
        raise empty_upload('/v1/colorize')
      (image,), colour = await svc.colorize([body], fmt, lambda i: 'the upload', check_colour=True,
                                            hints=[checked], strength=strengths)
    headers = {'Content-Disposition': f'inline; filename="colour.{"jpg" if fmt == "jpeg" else "png"}"'}
    if colour:
      headers['X-Colorizer-Note'] = ('the photo already had colour (or a tint): it was replaced by colour '
                                     'predicted from its lightness (L)')
    return fastapi.Response(image, media_type=IMAGE_TYPES[fmt], headers=headers)

  @api.post('/v1/colorize/suggest', summary='Suggest colours at a point', tags=['colorize'],
            response_model=schema.SuggestResponse, responses=schema.ERRORS, openapi_extra=schema.IMAGE_BODY)
  async def suggest(request: fastapi.Request,
                    x: float = fastapi.Query(description='0..1 from the photo\'s left edge'),
                    y: float = fastapi.Query(description='0..1 from the photo\'s top edge'),
                    hints: str | None = fastapi.Query(None, description=schema.HINTS_DOC),
                    x_colorizer_hints: str | None = fastapi.Header(None, description=schema.HINTS_HEADER_DOC)):
    """The body is an image file; the answer is the model's likeliest distinct colours at (x, y), given the
    hints already placed: `{"x": 0.3, "y": 0.6, "palette": [{"colour": "#3a6ea5", "probability": 0.41}, ...]}`
    (six, likeliest first; the probabilities of the six sum to at most 1). For models trained with the
    classification loss (GET /healthz says "suggests": true); others are answered 400."""
    for name, value in (('x', x), ('y', y)):
      if not 0.0 <= value <= 1.0:
        raise errors.BadInput(f'{name}={value:g} {user_hints.OUTSIDE}')
    async with bodies.body_of(request, svc.max_bytes, svc.buffered, body_timeout) as body:
      checked = hints_of(hints, x_colorizer_hints)
      if not body:
        raise empty_upload('/v1/colorize/suggest?x=0.5&y=0.5')
      (palette,) = await svc.suggest(body, [(x, y)], checked, 'the upload')
    return {'x': x, 'y': y, 'palette': [{'colour': '#%02x%02x%02x' % tuple(rgb), 'probability': round(p, 6)}
                                        for rgb, p in palette]}

  async def predict(request, name, version, verb=None):
    """verb: 'predict' from the route, or None: parse it from the path (NAME:verb)."""
    path_verb = tfserving.verb(svc, name, version)
    tfserving.check_predict(verb or path_verb)
    async with bodies.body_of(request, svc.max_body, svc.buffered, body_timeout) as body:
      return fastapi.Response(await tfserving.predict(svc, body), media_type='application/json')

  async def status(name, version, metadata=False):
    verb = tfserving.verb(svc, name, version)
    if verb:
      raise errors.NotAllowed(f'{verb} needs POST')
    return tfserving.metadata(svc.name, svc.colorizer) if metadata else tfserving.status(svc.colorizer)

  predict_doc = dict(tags=['TF Serving'], response_model=schema.PredictResponse, responses=schema.ERRORS,
                     openapi_extra=schema.JSON_BODY, summary='TF Serving predict')

  @api.post('/v1/models/{name}:predict', **predict_doc)
  async def predict_latest(request: fastapi.Request, name: str):
    """`{"instances": [{"b64": "<base64 of a photo>"}]}` -> `{"predictions": [{"b64": "<base64 of a JPEG>"}]}`.
    `signature_name` colorize_png answers PNG; raw takes L canvases and answers ab (see the metadata).
    Models trained with --hints also have colorize_hints (and colorize_hints_png): `{"signature_name":
    "colorize_hints", "instances": [{"image_bytes": {"b64": ...}, "points": [[x, y], ...], "colours":
    [[r, g, b], ...], "radius": [0, ...]}]}` (x, y in 0..1; (-1, -1) pads; colours 0..255; radius 0..0.25, 0: the
    default); classification models suggest_colours (the same plus "at": [[x, y], ...]) -> colours, probabilities.
    Malformed hints are answered 400 naming them: `instances[0].points[2]: (1.5, 0.2) is outside the photo`.
    Classification models exported with the colour strength also have colorize_strength(_png) (`{"image_bytes":
    {"b64": ...}, "strength": 0.8}`) and, with --hints, colorize_hints_strength(_png) (the hints and "strength"):
    0 palest to 1 most vivid, per image; a strength outside 0..1 is answered 400 naming it."""
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


@dataclasses.dataclass
class Config:
  model: Optional[str] = cli.flag(None, 'Export directory (TF Serving layout: DIR/<version>/saved_model.pb) or a '
                                  'version directory.', required=True)
  host: str = cli.flag('127.0.0.1', 'Address to listen on (0.0.0.0: every interface).')
  port: int = cli.flag(server.DEFAULT_PORT, 'Port to listen on.')
  model_name: str = cli.flag('colorizer', 'The NAME in /v1/models/NAME, as TF Serving\'s --model_name.')
  max_bytes: int = cli.flag(service.DEFAULT_MAX_BYTES, 'Largest image upload, in bytes.')
  max_pixels: int = cli.flag(service.REQUEST_MAX_PIXELS, 'Largest image, in pixels (width x height): the '
                             'server\'s budget per request, also the most pixels one model call takes; lower than '
                             'the command-line tools\' decompression-bomb guard, so that concurrent requests fit '
                             'in memory.')
  max_batch: int = cli.flag(8, 'Most images one model call takes from concurrent requests.')
  max_pending: int = cli.flag(32, 'Requests with model work in progress beyond which the server answers 503.')
  max_buffered: int = cli.flag(service.DEFAULT_MAX_BUFFERED, 'Bytes of request bodies the server holds at once '
                               '(uploads in progress and being coloured); past it, 503.')
  request_timeout: float = cli.flag(service.DEFAULT_TIMEOUT, 'Seconds a request may wait for the model before it '
                                    'is answered 503.')
  body_timeout: float = cli.flag(bodies.BODY_TIMEOUT, 'Seconds a client may take to send a request body (408 '
                                 'after).')
  header_timeout: float = cli.flag(server.HEADER_TIMEOUT, 'Seconds a client may take to send its headers.')
  keep_alive: float = cli.flag(server.KEEP_ALIVE, 'Seconds an idle connection is kept open.')
  graceful: float = cli.flag(server.GRACEFUL, 'On SIGTERM, seconds requests in progress have to finish.')


def main(cfg, argv):
  if len(argv) > 1:
    raise absl_app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    colorizer = exported.Colorizer(cfg.model)
  except exported.ModelError as e:
    raise absl_app.UsageError(str(e)) from None
  colorizer.warm_up()
  svc = Service(colorizer, cfg.model_name, cfg.max_bytes, cfg.max_pixels, cfg.max_batch, cfg.max_pending,
                cfg.request_timeout, max_buffered=cfg.max_buffered)
  logging.info('model %s version %d from %s', svc.name, colorizer.version, colorizer.path)
  print(f'Serving {colorizer.path} on http://{cfg.host}:{cfg.port}/ (REST: /v1/models/{svc.name}:predict, '
        'API: /openapi.json); Ctrl-C or SIGTERM stops', flush=True)
  server.run(make_app(svc, cfg.body_timeout), cfg.host, cfg.port, header_timeout=cfg.header_timeout,
             keep_alive=cfg.keep_alive, graceful=cfg.graceful)
  print('Stopped', flush=True)


if __name__ == '__main__':
  cli.run(main, Config)
