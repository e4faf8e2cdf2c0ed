"""Greedy request batching for the server: concurrent requests share one model call, a lone request waits for none.

One worker thread per batcher takes the first queued item, adds whatever else is already waiting (up to
max_batch items and max_weight in all, e.g. pixels) and runs them as one batch. There is no timer: under no load
a request runs at once, and under load the requests that arrive during a model call form the next batch, which is
where batching pays. The weight cap keeps one call's memory bounded: eight 30-megapixel photos in one batch would
need eight times the working memory of one, so a large photo runs alone.
"""
import concurrent.futures
import queue
import threading


class Batcher:
  """`run(items) -> results` (same length, a result may be an Exception) behind a queue of single items."""

  def __init__(self, run, max_batch=8, max_weight=None, name='batcher'):
    self._run = run
    self._max_batch = max_batch
    self._max_weight = max_weight
    self._queue = queue.SimpleQueue()
    self._held = None   # an item taken from the queue that did not fit the last batch: it starts the next
    self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
    self._thread.start()

  def submit(self, item, weight=0):
    """A Future of the item's result; an Exception result is raised by future.result()."""
    future = concurrent.futures.Future()
    self._queue.put((item, weight, future))
    return future

  def _next_batch(self):
    batch = [self._held or self._queue.get()]
    self._held = None
    weight = batch[0][1]
    while len(batch) < self._max_batch:
      try:
        entry = self._queue.get_nowait()
      except queue.Empty:
        break
      if self._max_weight is not None and weight + entry[1] > self._max_weight:
        self._held = entry
        break
      batch.append(entry)
      weight += entry[1]
    return batch

  def _loop(self):
    while True:
      batch = self._next_batch()
      try:
        results = list(self._run([item for item, _, _ in batch]))
        if len(results) != len(batch):   # a bug, but it must not leave requests waiting for ever
          raise RuntimeError(f'the model returned {len(results)} results for a batch of {len(batch)}')
      except Exception as e:   # keep serving: every request of the failed batch gets the error
        results = [e] * len(batch)
      for (_, _, future), result in zip(batch, results):
        if not future.set_running_or_notify_cancel():
          continue
        if isinstance(result, Exception):
          future.set_exception(result)
        else:
          future.set_result(result)
