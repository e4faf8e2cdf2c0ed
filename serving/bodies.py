"""Reading request bodies within limits: bytes, time, and the server's budget of bytes held at once.

The app reads every body through `body_of`; the limits are refused as kinds of serving/errors.py (TooLarge,
SlowClient, Busy), marked body_unread when the rest of the body is still on the wire, so that serving/app.py
closes the connection instead of parsing what is left of it as the next request.
"""
import asyncio
import contextlib

from serving import errors

BODY_TIMEOUT = 30.0   # seconds a client may take to send its body (20 MiB at 5.6 Mbit/s)
DRAIN = 4   # an over-limit body up to DRAIN x the limit is read and dropped (not kept), so the client sees the 413


@contextlib.asynccontextmanager
async def body_of(request, limit, budget, timeout=BODY_TIMEOUT):
  """`async with body_of(...) as body`: the request body, counted against the server's budget of buffered
  bytes (serving.service.Budget) while the request is handled; errors.TooLarge past `limit` bytes (announced or
  sent), errors.SlowClient past `timeout` seconds, errors.Busy when the budget is spent (many large uploads at
  once).

  A client still sending when the server answers gets a broken pipe instead of the answer (Python's http.client
  does), so a body somewhat over the limit is read to its end and dropped; a larger one is answered at once, and
  the connection closed."""
  length = request.headers.get('content-length')   # h11 has checked that it is a non-negative number
  too_large = errors.TooLarge(f'the request body has {length or "more than " + str(limit)} bytes, over this '
                              f'server\'s limit of {limit}: send a smaller file (or start the server with a larger '
                              '--max-bytes)')
  if length is not None and int(length) > DRAIN * limit:
    too_large.body_unread = True
    raise too_large
  chunks, size, taken = [], 0, 0

  async def receive():
    nonlocal size, taken
    async for chunk in request.stream():
      size += len(chunk)
      if size > DRAIN * limit:   # chunked: no length to check up front
        too_large.body_unread = True
        break
      if size <= limit:
        budget.take(len(chunk))   # counted as it arrives: a client that sends nothing holds nothing
        taken += len(chunk)
        chunks.append(chunk)
  try:
    try:
      await asyncio.wait_for(receive(), timeout)
    except asyncio.TimeoutError:
      raise errors.SlowClient(f'the request body did not arrive within {timeout:.0f} s ({size} of '
                              f'{length or "?"} bytes came): send it faster, or check the Content-Length header',
                              body_unread=True) from None
    except errors.Busy as e:   # the budget is spent: the rest of the body is still on the wire
      e.body_unread = True
      raise
    if size > limit:
      raise too_large
    body = b''.join(chunks)
    chunks.clear()
    yield body
  finally:
    budget.give(taken)
