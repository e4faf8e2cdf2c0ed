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
import math

from pipeline import quiet

tf = quiet.tensorflow()

import numpy as np

from serving import batching, hints as hints_lib, inputs, model, rest

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
    if colorizer.takes_hints:   # items (image, [Hint]): photos with hints share calls of colorize_hints(_png)
      self._hint_batchers = {fmt: batching.Batcher(
          lambda items, fmt=fmt: colorizer.colorize([i for i, _ in items], fmt, hints=[h for _, h in items]),
          max_batch, max_weight=max_pixels, name=f'batcher-hints-{fmt}') for fmt in model.FORMATS}
    # suggest: one photo per call, on a thread of its own (a Batcher of one: futures, errors, a bounded queue)
    self._suggester = batching.Batcher(lambda items: [colorizer.suggest(*items[0])], 1, name='suggest')
    self._threads = concurrent.futures.ThreadPoolExecutor(prep_threads, thread_name_prefix='prepare')
    self._pending = 0   # only touched on the event loop's thread
    self._input_specs = {n: colorizer.signature(n).structured_input_signature[1] for n in colorizer.signature_names}

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

  def check_hints(self, hints, what='hints'):
    """HttpError 400 when hints are sent to a model that cannot take them."""
    if any(hints) and not self.colorizer.takes_hints:
      raise HttpError(400, f'{what}: this model was trained without hints, so it cannot follow them: send the '
                      'photo without hints, or serve a model trained with python -m trainer.task --hints')

  async def colorize(self, images, fmt, where, check_colour=False, hints=None):
    """Encoded images -> (encoded colour images, the indices of inputs that already had colour).

    hints: per image a list of serving.hints.Hint (checked), or None; an image with hints is coloured by
    colorize_hints(_png), batched with other requests' photos with hints."""
    hints = hints or [[]] * len(images)
    self.check_hints(hints)
    release = self._acquire()
    futures = [self._on_thread(self._prepare, images, where, check_colour)]
    try:
      prepared = await self._wait(futures[0], 'reading the image')
      futures += [self._hint_batchers[fmt].submit((p.data, h), p.height * p.width) if h else
                  self._batchers[fmt].submit(p.data, p.height * p.width) for p, h in zip(prepared, hints)]
      results = []
      for i, future in enumerate(futures[1:]):
        try:
          results.append(await self._wait(future, 'colouring the image'))
        except model.ColorizeError as e:
          raise HttpError(e.status, f'{where(i)}: {e}') from None
    finally:   # the slot is held until the work this request started (decoding, model calls) has ended
      _when_all_done(futures, release)
    return results, [i for i, p in enumerate(prepared) if p.colour]

  async def suggest(self, image, at, hints, where):
    """The likeliest colours at the points `at` [(x, y), ...] of one encoded image, given its hints: per point
    [((r, g, b), probability), ...]."""
    if not self.colorizer.suggests:
      raise HttpError(400, f'this model cannot suggest colours (it has no colour distribution: it was trained '
                      'with --loss mse); pick the colour yourself')
    self.check_hints([hints])
    release = self._acquire()
    futures = [self._on_thread(self._prepare, [image], lambda i: where, False)]
    try:
      (prepared,) = await self._wait(futures[0], 'reading the image')
      futures.append(self._suggester.submit((prepared.data, at, hints)))
      try:
        return await self._wait(futures[1], 'suggesting colours')
      except model.ColorizeError as e:
        raise HttpError(e.status, f'{where}: {e}') from None
      except (tf.errors.ResourceExhaustedError, MemoryError) as e:
        raise HttpError(503, f'{where}: the server ran out of memory ({model.first_line(e)}): retry later, or '
                        'send a smaller photo') from None
      except tf.errors.InvalidArgumentError as e:
        raise HttpError(400, f'{where}: the model cannot decode it: {model.first_line(e)}') from None
    finally:
      _when_all_done(futures, release)

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
    name = request.signature_name
    fmt = {v: k for k, v in model.FORMATS.items()}.get(name)
    hint_fmt = {v: k for k, v in model.HINT_FORMATS.items()}.get(name)
    if fmt:   # image signatures: checked, limited and batched like uploads
      prefix = 'inputs.image_bytes' if request.columnar else 'instances'
      images, _ = await self.colorize(request.inputs['image_bytes'], fmt, lambda i: f'{prefix}[{i}]')
      outputs = {'image_bytes': images}
    elif hint_fmt:   # the same, with each instance's hints checked (and its padding dropped)
      hints = await self._wait(self._on_thread(_all_hints, request), 'reading the hints')
      images, _ = await self.colorize(request.inputs['image_bytes'], hint_fmt,
                                      lambda i: _where(request, 'image_bytes', i), hints=hints)
      outputs = {'image_bytes': images}
    elif name == 'suggest_colours':
      hints = await self._wait(self._on_thread(_all_hints, request), 'reading the hints')
      at = [_tensor_points(request, i) for i in range(len(hints))]
      release = self._acquire()
      futures = [self._on_thread(self._prepare, request.inputs['image_bytes'],
                                 lambda i: _where(request, 'image_bytes', i), False)]
      try:
        prepared = await self._wait(futures[0], 'reading the image')
        futures.append(self._on_thread(self._call_suggest, [p.data for p in prepared], hints, at))
        outputs = await self._wait(futures[1], 'the suggest_colours signature')
      finally:
        _when_all_done(futures, release)
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

  def _call_suggest(self, images, hints, at):
    """suggest_colours on prepared images, hints and points of varying counts (padded, then cut back)."""
    points, colours, radius = hints_lib.arrays(hints)
    m = max(len(a) for a in at)
    where = np.full([len(at), m, 2], 0.5, np.float32)
    for i, a in enumerate(at):
      where[i, :len(a)] = a
    try:
      out = self.colorizer('suggest_colours', image_bytes=tf.constant(images), points=tf.constant(points),
                           colours=tf.constant(colours), radius=tf.constant(radius), at=tf.constant(where))
    except (tf.errors.ResourceExhaustedError, MemoryError) as e:
      raise HttpError(503, f'suggest_colours: the server ran out of memory ({model.first_line(e)}): send a '
                      'smaller batch') from None
    except tf.errors.OpError as e:
      raise HttpError(400, f'suggest_colours: {model.first_line(e)}') from None
    return {k: [v[i, :len(a)] for i, a in enumerate(at)] for k, v in out.items()}

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
            'pending': self._pending, 'max_pending': self.max_pending, 'buffered_bytes': self.buffered.used,
            'hints': self.colorizer.takes_hints, 'suggests': self.colorizer.suggests,
            'max_hints': hints_lib.MAX_HINTS}


# -------------------------------------------------------------- hints as tensors (TF Serving's predict)

def _where(request, name, i, j=None):
  """How the client names value j of input `name` of instance i: instances[i].points[j] or inputs.points[i][j]."""
  where = f'inputs.{name}[{i}]' if request.columnar else f'instances[{i}].{name}'
  return where if j is None else f'{where}[{j}]'


def _finite(values):
  return all(math.isfinite(v) for v in values)


def _tensor_hints(request, i):
  """Instance i's points, colours and radius (as colorize_hints takes them) -> [Hint], checked; (-1, -1) points
  are padding and left out. HttpError 400 naming the value (instances[i].points[j]) for anything else."""
  points, colours, radius = (request.inputs[n][i] for n in ('points', 'colours', 'radius'))
  k = len(points)
  if k > hints_lib.MAX_HINTS:
    raise HttpError(400, f'{_where(request, "points", i)}: {k} points, more than the {hints_lib.MAX_HINTS} a photo '
                    'may have (padding included)')
  if len(colours) != k or len(radius) != k:
    raise HttpError(400, f'{_where(request, "points", i)}: {k} points, but {len(colours)} colours and '
                    f'{len(radius)} radii: give each point a colour and a radius (0: the default)')
  hints = []
  for j in range(k):
    x, y = (float(v) for v in points[j])
    if x == -1.0 and y == -1.0:
      continue
    if not (_finite((x, y)) and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
      raise HttpError(400, f'{_where(request, "points", i, j)}: ({x:g}, {y:g}) is outside the photo: x and y go '
                      'from 0 to 1 (left to right, top to bottom); (-1, -1) is padding')
    rgb = tuple(float(v) for v in colours[j])
    if not (_finite(rgb) and all(0.0 <= v <= 255.0 for v in rgb)):
      raise HttpError(400, f'{_where(request, "colours", i, j)}: [{", ".join(f"{v:g}" for v in rgb)}] is not an '
                      'sRGB colour: r, g and b go from 0 to 255')
    r = float(radius[j])
    if not (_finite((r,)) and 0.0 <= r <= 0.25):
      raise HttpError(400, f'{_where(request, "radius", i, j)}: {r:g} is not in 0..0.25 (a share of the photo\'s '
                      'long side; 0: the default)')
    hints.append(hints_lib.Hint(x, y, rgb, r))
  return hints


def _all_hints(request):
  return [_tensor_hints(request, i) for i in range(len(request.inputs['image_bytes']))]


def _tensor_points(request, i):
  """Instance i's `at` points (suggest_colours), checked: 1 to MAX_HINTS of them, inside the photo."""
  at = request.inputs['at'][i]
  if not 1 <= len(at) <= hints_lib.MAX_HINTS:
    raise HttpError(400, f'{_where(request, "at", i)}: {len(at)} points; ask about 1 to {hints_lib.MAX_HINTS}')
  for j, (x, y) in enumerate(at.tolist()):
    if not (_finite((x, y)) and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
      raise HttpError(400, f'{_where(request, "at", i, j)}: ({x:g}, {y:g}) is outside the photo: x and y go from '
                      '0 to 1 (left to right, top to bottom)')
  return at


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
