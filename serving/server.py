"""The HTTP server under the app: uvicorn (h11), with the time limits a server facing the open network needs.

uvicorn parses HTTP (h11 refuses malformed requests, a negative or non-numeric Content-Length among them, with
400 and a closed connection), keeps connections alive between requests (`keep_alive` seconds idle), and on
SIGTERM or Ctrl-C stops accepting, lets requests in progress finish (up to `graceful` seconds) and exits.

What uvicorn lacks is a deadline for a request's headers: a client that sends one header byte every few seconds
would hold its connection for ever. `_Protocol` adds one (`header_timeout`); the body's deadline is the app's
(serving/app.py), since only the app reads the body.

While it serves, the objects alive at its start (TensorFlow, the loaded model: ~690k of them) are left out of
Python's garbage collection (`_freeze`): a full collection walks every tracked object with every thread stopped,
the event loop too, which took 0.7-1.2 s for a serving process's heap on a loaded 2-core machine (1.6-2.6 s for
a test process's ~1M), and /healthz and every request waited it out. What serving allocates is still collected.
"""
import gc
import threading

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_PORT = 8501               # TF Serving's REST port, so its clients' defaults work too
HEADER_TIMEOUT = 10.0
KEEP_ALIVE = 75.0                 # longer than common load balancers' idle timeouts (60 s), so they close first
GRACEFUL = 60.0
BACKLOG = 1024                    # listen backlog: bursts of clients wait instead of being refused


def _protocol(header_timeout):
  class _Protocol(H11Protocol):
    """h11 with a deadline for each request's headers, counted from its first byte (or from the connection)."""
    _header_timer = None

    def connection_made(self, transport):
      super().connection_made(transport)
      self._arm()

    def _idle(self):
      return self.cycle is None or self.cycle.response_complete

    def _arm(self):
      if self._header_timer is None:
        self._header_timer = self.loop.call_later(header_timeout, self._header_deadline)

    def _disarm(self):
      if self._header_timer is not None:
        self._header_timer.cancel()
        self._header_timer = None

    def data_received(self, data):
      if self._idle():
        self._arm()
      super().data_received(data)
      if not self._idle():   # the headers are in: from here on the app's body deadline applies
        self._disarm()

    def on_response_complete(self):
      self._disarm()   # an idle kept-alive connection: uvicorn's keep-alive timeout applies
      super().on_response_complete()

    def _header_deadline(self):
      self._header_timer = None
      if self._idle() and not self.transport.is_closing():
        self.transport.close()

    def connection_lost(self, exc):
      self._disarm()
      super().connection_lost(exc)

  return _Protocol


def config(app, host='127.0.0.1', port=DEFAULT_PORT, header_timeout=HEADER_TIMEOUT, keep_alive=KEEP_ALIVE,
           graceful=GRACEFUL):
  return uvicorn.Config(app, host=host, port=port, http=_protocol(header_timeout), loop='asyncio',
                        timeout_keep_alive=keep_alive, timeout_graceful_shutdown=graceful, backlog=BACKLOG,
                        server_header=False, date_header=True, access_log=False, log_config=None, lifespan='off')


class _Server(uvicorn.Server):
  def handle_exit(self, sig, frame):
    super().handle_exit(sig, frame)
    # uvicorn re-raises the signal after its graceful shutdown, so the process would die of it (status -15);
    # a stop that was asked for and went cleanly exits 0, as service managers expect of a finished shutdown.
    self._captured_signals.clear()


_servers = [0]                    # servers running in this process (tests run several): they share the freeze
_servers_lock = threading.Lock()


def _freeze():
  """Leave the objects alive now out of garbage collection (after collecting what is garbage already, so that it
  is not kept) until the last server of the process has stopped (_thaw)."""
  with _servers_lock:
    gc.collect()
    gc.freeze()
    _servers[0] += 1


def _thaw():
  with _servers_lock:
    _servers[0] -= 1
    if not _servers[0]:
      gc.unfreeze()


class Background:
  """A uvicorn server on its own thread (tests, benchmarks): `with Background(app) as (host, port): ...`."""

  def __init__(self, app, host='127.0.0.1', port=0, **kw):
    self.server = _Server(config(app, host, port, **kw))
    self._thread = threading.Thread(target=self.server.run, name='uvicorn', daemon=True)

  def __enter__(self):
    _freeze()
    self._thread.start()
    for _ in range(600):
      if self.server.started:
        sockname = self.server.servers[0].sockets[0].getsockname()
        return sockname[0], sockname[1]
      if not self._thread.is_alive():
        break
      threading.Event().wait(0.05)
    _thaw()
    raise RuntimeError('the HTTP server did not start within 30 s')

  def __exit__(self, *exc):
    self.server.should_exit = True
    self._thread.join(timeout=GRACEFUL + 5)
    _thaw()


def run(app, host, port, **kw):
  """Serve until SIGTERM or Ctrl-C (uvicorn's handlers: finish requests in progress, then return)."""
  _freeze()
  try:
    _Server(config(app, host, port, **kw)).run()
  finally:
    _thaw()
