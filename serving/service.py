"""What the HTTP layer calls: the loaded model, its batchers, and the limits that keep a server up under load.

Everything here is bounded, in count and in time:
- Request bodies held at once are limited to `max_buffered` bytes (serving/app.py counts them as they arrive).
- `max_pending` requests may hold model work (preparing, waiting for or in a model call); one more gets 503 at
  once, before its image is decoded, so a burst costs nothing but the answer.
- Image preparation (header checks, decoding unusual formats) runs on `prep_threads` threads, the model on one
  batcher thread per output format, batches capped at `max_batch` images and `max_pixels` pixels in all.
- Every wait has a timeout (`request_timeout`): a request past it gets 503; its slot is freed only when the
  model call it joined has ended, so timed-out work cannot pile up beyond `max_pending`.
Nothing here blocks the event loop: JSON, base64 and images are handled on threads.
"""
import asyncio
import concurrent.futures
import json

from pipeline import quiet

tf = quiet.tensorflow()

from serving import batching, inputs, model, rest

DEFAULT_MAX_BYTES = 20 * 2 ** 20
DEFAULT_MAX_PIXELS = 30_000_000   # a 24-megapixel camera photo fits
DEFAULT_MAX_BUFFERED = 256 * 2 ** 20   # request bodies held at once: ~9 full-size base64 JSON bodies
DEFAULT_TIMEOUT = 120.0           # seconds a request may wait for the model (a 30 MP photo takes ~10 s here)


class HttpError(Exception):
  """An answer for the client: status and a message naming what was wrong and what to do."""

  def __init__(self, status, message):
    super().__init__(message)
    self.status = status


class Budget:
  """Bytes held by requests in progress (their bodies), against a limit; only used on the event loop's thread."""

  def __init__(self, limit):
    self.limit, self.used = limit, 0

  def take(self, n):
    if self.used + n > self.limit:
      raise HttpError(503, f'the server holds {self.used} bytes of uploads already (--max-buffered '
                      f'{self.limit}): retry in a moment')
    self.used += n

  def give(self, n):
    self.used -= n


class Service:
  """The model behind the REST API and the page, with the request limits."""

  def __init__(self, colorizer, name='colorizer', max_bytes=DEFAULT_MAX_BYTES, max_pixels=DEFAULT_MAX_PIXELS,
               max_batch=8, max_pending=32, request_timeout=DEFAULT_TIMEOUT, prep_threads=2,
               max_buffered=DEFAULT_MAX_BUFFERED):
    self.colorizer, self.name = colorizer, name
    self.buffered = Budget(max_buffered)
    self.max_bytes, self.max_pixels = max_bytes, max_pixels
    self.max_pending, self.request_timeout = max_pending, request_timeout
    self._batchers = {fmt: batching.Batcher(lambda items, fmt=fmt: colorizer.colorize(items, fmt), max_batch,
                                            max_weight=max_pixels, name=f'batcher-{fmt}') for fmt in model.FORMATS}
    self._threads = concurrent.futures.ThreadPoolExecutor(prep_threads, thread_name_prefix='prepare')
    self._pending = 0   # only touched on the event loop's thread
    self._input_specs = {n: colorizer.signature(n).structured_input_signature[1] for n in model.SIGNATURES}

  # -------------------------------------------------------------- limits

  @property
  def max_body(self):
    """Largest request body: one full-size image as base64 in JSON, plus room for the JSON around it."""
    return self.max_bytes * 4 // 3 + 65536

  def _acquire(self):
    if self._pending >= self.max_pending:
      raise HttpError(503, f'the server is busy ({self._pending} requests in progress, --max-pending '
                      f'{self.max_pending}): retry in a moment')
    self._pending += 1
    released = False

    def release(*_):
      nonlocal released
      if not released:
        released = True
        self._pending -= 1
    return release

  async def _wait(self, future, what):
    """Await a concurrent future with the request timeout; on timeout the work goes on, the client gets 503."""
    try:
      return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.request_timeout)
    except asyncio.TimeoutError:
      raise HttpError(503, f'{what} did not finish within {self.request_timeout:.0f} s (the server is '
                      'overloaded): retry later, or send a smaller photo') from None

  def _on_thread(self, fn, *args):
    return self._threads.submit(fn, *args)

  # -------------------------------------------------------------- model work

  async def colorize(self, images, fmt, where, check_colour=False):
    """Encoded images -> (encoded colour images, the indices of inputs that already had colour)."""
    release = self._acquire()
    futures = [self._on_thread(self._prepare, images, where, check_colour)]
    try:
      prepared = await self._wait(futures[0], 'reading the image')
      futures += [self._batchers[fmt].submit(p.data, p.height * p.width) for p in prepared]
      results = []
      for i, future in enumerate(futures[1:]):
        try:
          results.append(await self._wait(future, 'colouring the image'))
        except model.ColorizeError as e:
          raise HttpError(e.status, f'{where(i)}: {e}') from None
    finally:   # the slot is held until the work this request started (decoding, model calls) has ended
      _when_all_done(futures, release)
    return results, [i for i, p in enumerate(prepared) if p.colour]

  def _prepare(self, images, where, check_colour):
    prepared = []
    for i, data in enumerate(images):
      try:
        prepared.append(inputs.prepare(data, self.max_bytes, self.max_pixels, check_colour))
      except inputs.InputError as e:
        raise HttpError(e.status, f'{where(i)}: {e}') from None
    return prepared

  async def predict(self, body):
    """TF Serving's predict: request body bytes -> response body bytes (JSON)."""
    request = await self._wait(self._on_thread(self._parse, body), 'reading the request')
    fmt = {v: k for k, v in model.FORMATS.items()}.get(request.signature_name)
    if fmt:   # image signatures: checked, limited and batched like uploads
      prefix = 'inputs.image_bytes' if request.columnar else 'instances'
      images, _ = await self.colorize(request.inputs['image_bytes'], fmt, lambda i: f'{prefix}[{i}]')
      outputs = {'image_bytes': images}
    else:
      release = self._acquire()
      future = self._on_thread(self._call, request)
      _when_all_done([future], release)
      outputs = await self._wait(future, f'the {request.signature_name} signature')
    return await self._wait(self._on_thread(self._format, outputs, request.columnar), 'writing the answer')

  def _parse(self, body):
    try:
      return rest.parse_predict(body, self._input_specs)
    except rest.RequestError as e:
      raise HttpError(e.status, str(e)) from None

  def _call(self, request):
    try:
      return self.colorizer(request.signature_name, **{k: tf.constant(v) for k, v in request.inputs.items()})
    except (tf.errors.ResourceExhaustedError, MemoryError) as e:
      raise HttpError(503, f'{request.signature_name}: the server ran out of memory ({model.first_line(e)}): '
                      'send a smaller batch') from None
    except (tf.errors.OpError, ValueError, TypeError) as e:
      raise HttpError(400, f'{request.signature_name}: {model.first_line(e)}') from None

  @staticmethod
  def _format(outputs, columnar):
    return json.dumps(rest.format_predict(outputs, columnar)).encode()

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
            'max_bytes': self.max_bytes, 'max_pixels': self.max_pixels,
            'pending': self._pending, 'max_pending': self.max_pending, 'buffered_bytes': self.buffered.used}


def _when_all_done(futures, callback):
  """Call callback() on the event loop's thread once every one of these concurrent futures is done (at once if
  there are none). Futures finish on worker threads; the counters they touch live on the loop's thread."""
  if not futures:
    callback()
    return
  remaining = [len(futures)]
  loop = asyncio.get_running_loop()

  def one_done():
    remaining[0] -= 1
    if remaining[0] == 0:
      callback()
  for f in futures:
    f.add_done_callback(lambda _: loop.call_soon_threadsafe(one_done))
