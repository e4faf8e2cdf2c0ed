"""What the HTTP layer calls: the loaded model, its batchers, and the limits that keep a server up under load.

Everything here is bounded, in count and in time:
- Request bodies held at once are limited to `max_buffered` bytes (serving/bodies.py counts them as they arrive).
- `max_pending` requests may hold model work (preparing, waiting for or in a model call); one more is refused
  (errors.Busy) at once, before its image is decoded, so a burst costs nothing but the answer.
- Image preparation (header checks, decoding unusual formats) runs on `prep_threads` threads, the model on one
  batcher thread per colouring signature (output format; with hints; with a colour strength), batches capped at
  `max_batch` images and `max_pixels` pixels in all.
- Every wait has a timeout (`request_timeout`): a request past it is answered errors.TimedOut; its slot is freed
  only when the model call it joined has ended, so timed-out work cannot pile up beyond `max_pending`.
Nothing here blocks the event loop: JSON, base64 and images are handled on threads. Failures are the kinds of
serving/errors.py, named after the input they are about (`instances[2]: ...`); serving/app.py gives them statuses.
"""
import asyncio
import concurrent.futures

from serving import batching, errors, exported, inputs, tfserving, user_hints

DEFAULT_MAX_BYTES = 20 * 2 ** 20
# The server's budget per request and per model call: concurrent requests must fit in memory together, so it is
# well under the decoders' decompression-bomb guard (pipeline.decode.BOMB_GUARD_PIXELS) that the CLI applies.
REQUEST_MAX_PIXELS = 30_000_000   # a 24-megapixel camera photo fits
DEFAULT_MAX_BUFFERED = 256 * 2 ** 20   # request bodies held at once: ~9 full-size base64 JSON bodies
DEFAULT_TIMEOUT = 120.0           # seconds a request may wait for the model (a 30 MP photo takes ~10 s here)


class Budget:
  """Bytes held by requests in progress (their bodies), against a limit; only used on the event loop's thread."""

  def __init__(self, limit):
    self.limit, self.used = limit, 0

  def take(self, n):
    if self.used + n > self.limit:
      raise errors.Busy(f'the server holds {self.used} bytes of uploads already (--max-buffered '
                        f'{self.limit}): retry in a moment')
    self.used += n

  def give(self, n):
    self.used -= n


class Service:
  """The model behind the REST API and the page, with the request limits."""

  def __init__(self, colorizer, name='colorizer', max_bytes=DEFAULT_MAX_BYTES, max_pixels=REQUEST_MAX_PIXELS,
               max_batch=8, max_pending=32, request_timeout=DEFAULT_TIMEOUT, prep_threads=2,
               max_buffered=DEFAULT_MAX_BUFFERED):
    self.colorizer, self.name = colorizer, name
    self.buffered = Budget(max_buffered)
    self.max_bytes, self.max_pixels = max_bytes, max_pixels
    self.max_pending, self.request_timeout = max_pending, request_timeout
    # One batcher per colouring signature the model has, each with a thread: items (image, [Hint], strength);
    # concurrent requests share a call of theirs, whatever their hints and strengths (both are per image).
    self._batchers = {key: self._batcher(*key, max_batch, max_pixels)
                      for key in exported.IMAGE_SIGNATURES.values() if self._offers(*key[1:])}
    # suggest: one photo per call, on a thread of its own (a Batcher of one: futures, errors, a bounded queue)
    self._suggester = batching.Batcher(lambda items: [colorizer.suggest(*items[0])], 1, name='suggest')
    self._threads = concurrent.futures.ThreadPoolExecutor(prep_threads, thread_name_prefix='prepare')
    self._pending = 0   # only touched on the event loop's thread
    self.input_specs = tfserving.input_specs(colorizer)

  def _offers(self, hinted, strong):
    return (self.colorizer.takes_hints or not hinted) and (self.colorizer.has_strength or not strong)

  def _batcher(self, fmt, hinted, strong, max_batch, max_pixels):
    def run(items):
      given = {}   # only the keywords in use: the automatic call stays colorize(images, fmt)
      if hinted:
        given['hints'] = [h for _, h, _ in items]
      if strong:
        given['strength'] = [s for _, _, s in items]
      return self.colorizer.colorize([image for image, _, _ in items], fmt, **given)
    name = '-'.join(['batcher'] + ['hints'] * hinted + ['strength'] * strong + [fmt])
    return batching.Batcher(run, max_batch, max_weight=max_pixels, name=name)

  # -------------------------------------------------------------- limits

  @property
  def max_body(self):
    """Largest request body: one full-size image as base64 in JSON, plus room for the JSON around it."""
    return self.max_bytes * 4 // 3 + 65536

  def _acquire(self):
    if self._pending >= self.max_pending:
      raise errors.Busy(f'the server is busy ({self._pending} requests in progress, --max-pending '
                        f'{self.max_pending}): retry in a moment')
    self._pending += 1
    released = False

    def release(*_):
      nonlocal released
      if not released:
        released = True
        self._pending -= 1
    return release

  async def _wait(self, future, what, where=None):
    """Await a concurrent future with the request timeout; on timeout the work goes on, the client is told to
    retry. where: the input the work was about, named in its failures."""
    try:
      return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.request_timeout)
    except asyncio.TimeoutError:
      raise errors.TimedOut(f'{what} did not finish within {self.request_timeout:.0f} s (the server is '
                            'overloaded): retry later, or send a smaller photo') from None
    except errors.ServingError as e:
      if where is None:
        raise
      raise e.at(where) from None

  def _on_thread(self, fn, *args):
    return self._threads.submit(fn, *args)

  async def off_loop(self, what, fn, *args):
    """fn(*args) on a worker thread (parsing, formatting: work that must not block the event loop), timed."""
    return await self._wait(self._on_thread(fn, *args), what)

  # -------------------------------------------------------------- model work

  def check_hints(self, hints, what='hints'):
    """errors.Unsupported when hints are sent to a model that cannot take them."""
    if any(hints) and not self.colorizer.takes_hints:
      raise errors.Unsupported(f'{what}: this model was trained without hints, so it cannot follow them: send the '
                               'photo without hints, or serve a model trained with python -m trainer.task --hints')

  def check_strength(self, value, what='strength'):
    """A colour strength -> float in 0..1; errors.BadInput naming `what` when it is not one, errors.Unsupported
    (saying why and what to do) when the model has no strength control."""
    value = exported.check_strength(value, what)
    if not self.colorizer.has_strength:
      raise self.colorizer.strength_unsupported().at(what)
    return value

  async def colorize(self, images, fmt, where, check_colour=False, hints=None, strength=None):
    """Encoded images -> (encoded colour images, the indices of inputs that already had colour).

    hints: per image a list of user_hints.Hint (checked), or None; strength: per image a colour strength (checked,
    check_strength), or None: the export's default. An image is coloured by the signature for what it has
    (colorize(_png), colorize_hints(_png), colorize_strength(_png), colorize_hints_strength(_png)), batched with
    other requests' photos for the same signature."""
    hints = hints or [[]] * len(images)
    strength = strength or [None] * len(images)
    self.check_hints(hints)
    release = self._acquire()
    futures = [self._on_thread(self._prepare, images, where, check_colour)]
    try:
      prepared = await self._wait(futures[0], 'reading the image')
      futures += [self._batchers[fmt, bool(h), s is not None].submit((p.data, h, s), p.height * p.width)
                  for p, h, s in zip(prepared, hints, strength)]
      results = [await self._wait(future, 'colouring the image', where(i)) for i, future in enumerate(futures[1:])]
    finally:   # the slot is held until the work this request started (decoding, model calls) has ended
      _when_all_done(futures, release)
    return results, [i for i, p in enumerate(prepared) if p.colour]

  async def suggest(self, image, at, hints, where):
    """The likeliest colours at the points `at` [(x, y), ...] of one encoded image, given its hints: per point
    [((r, g, b), probability), ...]."""
    if not self.colorizer.suggests:
      raise errors.Unsupported('this model cannot suggest colours (it has no colour distribution: it was trained '
                               'with --loss mse); pick the colour yourself')
    self.check_hints([hints])
    release = self._acquire()
    futures = [self._on_thread(self._prepare, [image], lambda i: where, False)]
    try:
      (prepared,) = await self._wait(futures[0], 'reading the image')
      futures.append(self._suggester.submit((prepared.data, at, hints)))
      return await self._wait(futures[1], 'suggesting colours', where)
    finally:
      _when_all_done(futures, release)

  async def call(self, work, signature, images=(), where=None):
    """Other model work of one request (TF Serving's suggest_colours, raw): work([prepared image bytes]) on a
    worker thread, within the same limits; `images` are checked as uploads are (where(i) names image i)."""
    release = self._acquire()
    futures = [self._on_thread(self._prepare, images, where, False)] if images else []
    try:
      prepared = await self._wait(futures[0], 'reading the image') if images else []
      futures.append(self._on_thread(work, [p.data for p in prepared]))
      return await self._wait(futures[-1], f'the {signature} signature', signature)
    finally:
      _when_all_done(futures, release)

  def _prepare(self, images, where, check_colour):
    prepared = []
    for i, data in enumerate(images):
      try:
        prepared.append(inputs.prepare(data, self.max_bytes, self.max_pixels, check_colour))
      except errors.ServingError as e:
        raise e.at(where(i)) from None
    return prepared

  def health(self):
    return {'status': 'ok', 'model': self.name, 'version': self.colorizer.version,
            'max_bytes': self.max_bytes, 'max_pixels': self.max_pixels,
            'pending': self._pending, 'max_pending': self.max_pending, 'buffered_bytes': self.buffered.used,
            'hints': self.colorizer.takes_hints, 'suggests': self.colorizer.suggests,
            'max_hints': user_hints.MAX_HINTS,
            'strength': self.colorizer.default_strength if self.colorizer.has_strength else None}


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
