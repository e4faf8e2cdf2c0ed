"""What can go wrong with a request, by kind: the serving layers raise these, and only serving/app.py turns a kind
into an HTTP status (its STATUS table), so the model, the input checks and the protocol know nothing of HTTP.

Each message names what was wrong and what to do about it; `at(where)` prefixes the value it was about
(`instances[2]: not an image ...`). No TensorFlow here: the CLI's hint parsing uses these before TF loads.
"""


class ServingError(Exception):
  """A request that cannot be answered as asked. body_unread: the answer comes before the request's body was
  read to its end (what is left of it is still on the wire, so the connection cannot carry another request)."""

  def __init__(self, message, body_unread=False):
    super().__init__(message)
    self.body_unread = body_unread

  def at(self, where):
    """The same error about `where` (an input, a value of it): its message prefixed by the name."""
    return type(self)(f'{where}: {self}')


class BadInput(ServingError, ValueError):
  """The input is at fault: malformed, not an image, outside a range. The client must change it."""


class Unsupported(ServingError):
  """The request is well formed, but this model or server cannot do it (hints to a model trained without them)."""


class NotFound(ServingError):
  """No such model, version or file."""


class NotAllowed(ServingError):
  """The resource exists, but not with this method (GET on predict)."""


class SlowClient(ServingError):
  """The client did not send its request in time."""


class TooLarge(ServingError):
  """Over a size limit (bytes, pixels): the client must send less, or the server be started with a larger one."""


class Busy(ServingError):
  """The server is at a limit of concurrent work or held bytes: retry in a moment."""


class TimedOut(ServingError):
  """The server's work did not finish within the request's time limit (overloaded): retry later."""


class OutOfMemory(ServingError):
  """The model ran out of memory: the server's state, not the input's fault; retry later or send less."""


class ModelFailed(ServingError):
  """The model failed for another reason (a fault of the export or the runtime)."""
