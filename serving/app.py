r"""The colorizer behind a web page and a REST API.

  python -m serving.app --model EXPORT_DIR [--host 127.0.0.1] [--port 8501] [--model-name colorizer]

  GET  /                                       the web page: drop a black-and-white photo, get it in colour
  POST /v1/colorize[?format=png]               body: an image file -> image/jpeg (or image/png), same size
  POST /v1/models/NAME[/versions/V]:predict    TF Serving's predict API (JSON, {"b64": ...} for bytes)
  GET  /v1/models/NAME[/versions/V]            TF Serving's model status
  GET  /v1/models/NAME[/versions/V]/metadata   signature defs (TF Serving's) and the model's colorizer.json
  GET  /healthz                                {"status": "ok", ...} once the model is loaded and warm

Errors are {"error": "..."} with a 4xx status (TF Serving's form). Requests that arrive while the model is busy
are batched into its next call (serving/batching.py).
"""
import http.server
import importlib.resources
import json
import re
import threading
import time
import urllib.parse

from pipeline import quiet

tf = quiet.tensorflow()

from absl import app, flags, logging

from serving import batching, inputs, model, rest

DEFAULT_PORT = 8501               # TF Serving's REST port, so its clients' defaults work too
DEFAULT_MAX_BYTES = 20 * 2 ** 20
DEFAULT_MAX_PIXELS = 30_000_000   # a 24-megapixel camera photo fits
STATIC_TYPES = {'.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8',
                '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png'}
IMAGE_TYPES = {'jpeg': 'image/jpeg', 'png': 'image/png'}
# The page loads nothing from elsewhere; say so to the browser as well.
CSP = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'"
MODEL_ROUTE = r'/v1/models/([^/:]+)(?:/versions/(\d+))?(?::(\w+)|/(metadata))?'


class HttpError(Exception):
  def __init__(self, status, message):
    super().__init__(message)
    self.status = status


class Service:
  """What the HTTP handler calls: the loaded model, its batchers and the request limits."""

  def __init__(self, colorizer, name='colorizer', max_bytes=DEFAULT_MAX_BYTES, max_pixels=DEFAULT_MAX_PIXELS,
               max_batch=8, max_pending=32):
    self.colorizer, self.name = colorizer, name
    self.max_bytes, self.max_pixels = max_bytes, max_pixels
    self._batchers = {fmt: batching.Batcher(lambda items, fmt=fmt: colorizer.colorize(items, fmt), max_batch,
                                            name=f'batcher-{fmt}') for fmt in model.FORMATS}
    self._pending = threading.BoundedSemaphore(max_pending)
    self._input_specs = {n: colorizer.signature(n).structured_input_signature[1] for n in model.SIGNATURES}
    self.static = {p.name: p for p in (importlib.resources.files('serving') / 'static').iterdir()}

  # -------------------------------------------------------------- model work

  def colorize(self, images, fmt, where, check_colour=False):
    """Encoded images -> (encoded colour images, the indices of inputs that already had colour)."""
    prepared = []
    for i, data in enumerate(images):
      try:
        prepared.append(inputs.prepare(data, self.max_bytes, self.max_pixels, check_colour))
      except inputs.InputError as e:
        raise HttpError(e.status, f'{where(i)}: {e}') from None
    if not self._pending.acquire(blocking=False):
      raise HttpError(503, 'the server is busy with other requests; retry in a moment')
    try:
      futures = [self._batchers[fmt].submit(p.data) for p in prepared]
      results = []
      for i, future in enumerate(futures):
        try:
          results.append(future.result())
        except model.ColorizeError as e:
          raise HttpError(400, f'{where(i)}: {e}') from None
    finally:
      self._pending.release()
    return results, [i for i, p in enumerate(prepared) if p.colour]

  def predict(self, body):
    try:
      request = rest.parse_predict(body, self._input_specs)
    except rest.RequestError as e:
      raise HttpError(e.status, str(e)) from None
    fmt = {v: k for k, v in model.FORMATS.items()}.get(request.signature_name)
    if fmt:   # image signatures: checked, limited and batched like uploads
      prefix = 'inputs.image_bytes' if request.columnar else 'instances'
      images, _ = self.colorize(request.inputs['image_bytes'], fmt, lambda i: f'{prefix}[{i}]')
      outputs = {'image_bytes': images}
    else:
      try:
        outputs = self.colorizer(request.signature_name, **{k: tf.constant(v) for k, v in request.inputs.items()})
      except (tf.errors.OpError, ValueError, TypeError) as e:
        raise HttpError(400, f'{request.signature_name}: {model.first_line(e)}') from None
    return rest.format_predict(outputs, request.columnar)

  # -------------------------------------------------------------- TF Serving's model endpoints

  def check_model(self, name, version):
    if name != self.name or (version is not None and int(version) != self.colorizer.version):
      spec = f'Specific({name}, {version})' if version is not None else f'Latest({name})'
      raise HttpError(404, f'Servable not found for request: {spec} (this server has {self.name}, '
                      f'version {self.colorizer.version})')

  def status(self):
    return {'model_version_status': [{'version': str(self.colorizer.version), 'state': 'AVAILABLE',
                                      'status': {'error_code': 'OK', 'error_message': ''}}]}

  def metadata(self):
    return {'model_spec': {'name': self.name, 'signature_name': '', 'version': str(self.colorizer.version)},
            'metadata': {'signature_def': {'signature_def': self.colorizer.signature_defs()}},
            'colorizer': self.colorizer.info}

  def health(self):
    return {'status': 'ok', 'model': self.name, 'version': self.colorizer.version,
            'max_bytes': self.max_bytes, 'max_pixels': self.max_pixels}


class Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'   # keep-alive: clients reuse connections
  server_version = 'colorizer'
  service: Service = None         # set by make_server

  # -------------------------------------------------------------- plumbing

  def _send(self, status, body, content_type, headers=()):
    self._status = status
    self.send_response(status)
    self.send_header('Content-Type', content_type)
    self.send_header('Content-Length', str(len(body)))
    for k, v in headers:
      self.send_header(k, v)
    if self.close_connection:
      self.send_header('Connection', 'close')
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(body)

  def _json(self, status, obj):
    self._send(status, json.dumps(obj).encode(), 'application/json')

  def _body(self, limit):
    if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
      self.close_connection = True
      raise HttpError(411, 'chunked uploads are not supported: send a Content-Length header')
    try:
      length = int(self.headers.get('Content-Length') or 0)
    except ValueError:
      self.close_connection = True
      raise HttpError(400, 'the Content-Length header is not a number') from None
    if length > limit:
      # Reading the rest lets the client see this answer instead of a reset connection; past a point, hang up.
      if length <= 4 * limit:
        self.rfile.read(length)
      else:
        self.close_connection = True
      raise HttpError(413, f'the request body has {length} bytes, over this server\'s limit of {limit} '
                      f'(--max-bytes {self.service.max_bytes} per image): send a smaller file')
    return self.rfile.read(length) if length else b''

  def log_message(self, fmt, *args):   # http.server would print to stderr; absl logging instead
    logging.debug('%s ' + fmt, self.address_string(), *args)

  def _dispatch(self, routes):
    started = time.perf_counter()
    url = urllib.parse.urlsplit(self.path)
    try:
      for pattern, fn in routes:
        m = re.fullmatch(pattern, url.path)
        if m:
          fn(m, urllib.parse.parse_qs(url.query))
          break
      else:
        raise HttpError(404, f'no such endpoint: {self.command} {url.path} (see / for the page, '
                        '/v1/models/NAME/metadata for the API)')
    except HttpError as e:
      self._json(e.status, {'error': str(e)})
    except (BrokenPipeError, ConnectionResetError):
      self.close_connection = True
    except Exception as e:   # a bug must not take the server down: answer 500 and log it
      logging.exception('internal error on %s %s', self.command, self.path)
      self.close_connection = True
      self._json(500, {'error': f'internal error: {type(e).__name__}: {e}'})
    logging.info('%s %s %s %.0f ms', self.command, url.path, getattr(self, '_status', '-'),
                 1000 * (time.perf_counter() - started))

  # -------------------------------------------------------------- routes

  def do_GET(self):
    self._dispatch([(r'/', self._page), (r'/static/([\w.-]+)', self._static), (r'/healthz', self._health),
                    (MODEL_ROUTE, self._model_get)])

  do_HEAD = do_GET

  def do_POST(self):
    self._dispatch([(r'/v1/colorize', self._upload), (MODEL_ROUTE, self._model_post)])

  def _page(self, m, query):
    self._static_file('index.html')

  def _static(self, m, query):
    self._static_file(m.group(1))

  def _static_file(self, name):
    path = self.service.static.get(name)
    if path is None:
      raise HttpError(404, f'no static file {name}')
    suffix = '.' + name.rsplit('.', 1)[-1]
    self._send(200, path.read_bytes(), STATIC_TYPES.get(suffix, 'application/octet-stream'),
               [('Content-Security-Policy', CSP), ('Cache-Control', 'no-cache')])

  def _health(self, m, query):
    self._json(200, self.service.health())

  def _model_get(self, m, query):
    name, version, verb, metadata = m.groups()
    if verb:
      raise HttpError(405, f'{verb} needs POST')
    self.service.check_model(name, version)
    self._json(200, self.service.metadata() if metadata else self.service.status())

  def _model_post(self, m, query):
    name, version, verb, metadata = m.groups()
    if verb != 'predict':
      raise HttpError(400 if verb else 405, f'{verb or "metadata"} is not supported: this server answers '
                      'POST /v1/models/NAME:predict')
    self.service.check_model(name, version)
    body = self._body(self.service.max_bytes * 4 // 3 + 65536)   # one full-size image as base64, plus JSON
    self._json(200, self.service.predict(body))

  def _upload(self, m, query):
    fmt = query.get('format', ['jpeg'])[0].lower().replace('jpg', 'jpeg')
    if fmt not in model.FORMATS:
      raise HttpError(400, f'format={fmt} is not offered; use format=jpeg or format=png')
    body = self._body(self.service.max_bytes)
    if not body:
      raise HttpError(400, 'empty request body: send the image file as the body, e.g. '
                      'curl --data-binary @photo.jpg -o colour.jpg http://HOST:PORT/v1/colorize')
    (image,), colour = self.service.colorize([body], fmt, lambda i: 'the upload', check_colour=True)
    headers = [('Content-Disposition', f'inline; filename="colour.{"jpg" if fmt == "jpeg" else "png"}"')]
    if colour:
      headers.append(('X-Colorizer-Note', 'the photo already had colour (or a tint): it was replaced by '
                      'colour predicted from its lightness (L)'))
    self._send(200, image, IMAGE_TYPES[fmt], headers)


class Server(http.server.ThreadingHTTPServer):
  daemon_threads = True
  allow_reuse_address = True
  request_queue_size = 128   # listen backlog: bursts of clients wait instead of being refused


def make_server(service, host='127.0.0.1', port=DEFAULT_PORT):
  """An HTTP server for the service (port 0: any free port; see server.server_address)."""
  handler = type('BoundHandler', (Handler,), {'service': service})
  return Server((host, port), handler)


def warm_up(colorizer):
  """One call of each image signature, so the first user does not wait for TF's graph start-up."""
  import numpy as np
  probe = tf.io.encode_png(np.full((32, 48, 3), 128, np.uint8)).numpy()
  for fmt in model.FORMATS:
    colorizer.colorize([probe], fmt)


FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags, defined only when run as a program (see serving.colorize.define_flags)."""
  flags.DEFINE_string('model', None, 'Export directory (TF Serving layout: DIR/<version>/saved_model.pb) or a '
                      'version directory.', required=True)
  flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every interface).')
  flags.DEFINE_integer('port', DEFAULT_PORT, 'Port to listen on.')
  flags.DEFINE_string('model-name', 'colorizer', 'The NAME in /v1/models/NAME, as TF Serving\'s --model_name.')
  flags.DEFINE_integer('max-bytes', DEFAULT_MAX_BYTES, 'Largest image upload, in bytes.')
  flags.DEFINE_integer('max-pixels', DEFAULT_MAX_PIXELS, 'Largest image, in pixels (width x height).')
  flags.DEFINE_integer('max-batch', 8, 'Most images one model call takes from concurrent requests.')
  flags.DEFINE_integer('max-pending', 32, 'Requests waiting for the model beyond which the server answers 503.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    colorizer = model.Colorizer(FLAGS.model)
  except model.ModelError as e:
    raise app.UsageError(str(e)) from None
  warm_up(colorizer)
  service = Service(colorizer, FLAGS['model-name'].value, FLAGS['max-bytes'].value, FLAGS['max-pixels'].value,
                    FLAGS['max-batch'].value, FLAGS['max-pending'].value)
  server = make_server(service, FLAGS.host, FLAGS.port)
  host, port = server.server_address[:2]
  logging.info('model %s version %d from %s', service.name, colorizer.version, colorizer.path)
  print(f'Serving {colorizer.path} on http://{host}:{port}/ (REST: /v1/models/{service.name}:predict); '
        'Ctrl-C stops', flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


if __name__ == '__main__':
  define_flags()
  app.run(main)
