"""Greedy request batching for the server: concurrent requests share one model call, a lone request waits for none.

One worker thread per batcher takes the first queued item, adds whatever else is already waiting (up to
max_batch) and runs them as one batch. There is no timer: under no load a request runs at once, and under load
the requests that arrive during a model call form the next batch, which is where batching pays (the model runs
a batch of N faster than N single calls, and the worker never leaves the cores idle between calls).
"""
import concurrent.futures
import queue
import threading


class Batcher:
  """`run(items) -> results` (same length, a result may be an Exception) behind a queue of single items."""

  def __init__(self, run, max_batch=8, name='batcher'):
    self._run = run
    self._max_batch = max_batch
    self._queue = queue.SimpleQueue()
    self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
    self._thread.start()

  def submit(self, item):
    """A Future of the item's result; an Exception result is raised by future.result()."""
    future = concurrent.futures.Future()
    self._queue.put((item, future))
    return future

  def _loop(self):
    while True:
      batch = [self._queue.get()]
      while len(batch) < self._max_batch:
        try:
          batch.append(self._queue.get_nowait())
        except queue.Empty:
          break
      try:
        results = self._run([item for item, _ in batch])
      except Exception as e:   # keep serving: every request of the failed batch gets the error
        results = [e] * len(batch)
      for (_, future), result in zip(batch, results):
        if isinstance(result, Exception):
          future.set_exception(result)
        else:
          future.set_result(result)
