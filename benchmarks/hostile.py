"""Hostile and heavy HTTP clients, on raw sockets (http.client refuses to send most of these), loopback only.

Used by benchmarks/load.py (measured, bounded in count and time) and by the tests (tests/test_app_hostile.py,
tests/test_colour_lands.py: each case once, quickly). Every socket has a timeout: a client here never waits for
ever either.
"""
import base64
import concurrent.futures
import dataclasses
import io
import json
import socket
import threading
import time
import zlib

import numpy as np
from PIL import Image

LOOPBACK = ('127.0.0.1', 'localhost', '::1')


def check_loopback(host):
  if host not in LOOPBACK:
    raise ValueError(f'{host} is not a loopback address: these clients only ever talk to this machine')


@dataclasses.dataclass
class Answer:
  status: int            # 0: the server closed the connection without an answer
  headers: dict          # lower-case names
  body: bytes
  seconds: float

  def json(self):
    return json.loads(self.body)


def read_answer(sock, started):
  """One HTTP/1.1 response from the socket (Content-Length framed, as this server answers)."""
  data = b''
  while b'\r\n\r\n' not in data:
    chunk = sock.recv(65536)
    if not chunk:
      return Answer(0, {}, data, time.perf_counter() - started)
    data += chunk
  head, body = data.split(b'\r\n\r\n', 1)
  lines = head.decode('latin-1').split('\r\n')
  headers = {k.strip().lower(): v.strip() for k, v in (line.split(':', 1) for line in lines[1:])}
  length = int(headers.get('content-length', 0))
  while len(body) < length:
    chunk = sock.recv(65536)
    if not chunk:
      break
    body += chunk
  return Answer(int(lines[0].split()[1]), headers, body, time.perf_counter() - started)


def raw(address, data, timeout=30.0, shutdown_write=False):
  """Send these bytes as they are on a new connection, read one answer."""
  check_loopback(address[0])
  started = time.perf_counter()
  with socket.create_connection(address, timeout=timeout) as sock:
    sock.sendall(data)
    if shutdown_write:
      sock.shutdown(socket.SHUT_WR)
    try:
      return read_answer(sock, started)
    except ConnectionResetError:
      return Answer(0, {}, b'', time.perf_counter() - started)


def request(method, path, body=b'', headers=(), length=True):
  """The bytes of a request; `length`: True for the real Content-Length, a value to lie, False for none."""
  lines = [f'{method} {path} HTTP/1.1', 'Host: 127.0.0.1']
  if length is not False:
    lines.append(f'Content-Length: {len(body) if length is True else length}')
  lines += [f'{k}: {v}' for k, v in headers]
  return ('\r\n'.join(lines) + '\r\n\r\n').encode() + body


def chunked(method, path, body, chunk=65536):
  parts = [f'{len(body[i:i + chunk]):x}\r\n'.encode() + body[i:i + chunk] + b'\r\n'
           for i in range(0, len(body), chunk)]
  return request(method, path, length=False, headers=[('Transfer-Encoding', 'chunked')]) + b''.join(parts) + \
      b'0\r\n\r\n'


def get(address, path, timeout=30.0):
  return raw(address, request('GET', path, length=False), timeout)


def post(address, path, body, timeout=120.0, headers=()):
  return raw(address, request('POST', path, body, headers), timeout)


def predict_body(images):
  return json.dumps({'instances': [{'b64': base64.b64encode(i).decode()} for i in images]}).encode()


# ---------------------------------------------------------------- malformed content

def png_bomb(side=100_000):
  """A PNG that claims side x side pixels (10 gigapixels by default) in a few hundred bytes."""
  buf = io.BytesIO()
  Image.new('L', (64, 64)).save(buf, 'PNG')
  data = bytearray(buf.getvalue())
  data[16:24] = side.to_bytes(4, 'big') * 2          # IHDR width and height
  data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, 'big')   # a valid chunk CRC, so decoders read on
  return bytes(data)


def truncated_jpeg(jpeg):
  return jpeg[:len(jpeg) // 3]


# ---------------------------------------------------------------- many clients

def slow_clients(address, count, partial=b'POST /v1/colorize HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n'):
  """`count` connections that each send `partial` (by default headers that announce a body never sent)."""
  check_loopback(address[0])
  socks = []
  for _ in range(count):
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(partial)
    socks.append(sock)
  return socks


def closed_by_server(socks, timeout):
  """How many of these sockets the server closed (after answering or not) within `timeout` seconds."""
  deadline = time.monotonic() + timeout
  closed = 0
  for sock in socks:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
      while sock.recv(65536):
        pass
      closed += 1
    except (socket.timeout, TimeoutError):
      pass
    except ConnectionResetError:
      closed += 1
    finally:
      sock.close()
  return closed


@dataclasses.dataclass
class LoadReport:
  seconds: float
  statuses: dict         # status -> count
  latencies: list        # seconds, of the 200 answers
  health_worst: float    # slowest /healthz answer during the load, seconds
  health_failures: int

  @property
  def requests_per_second(self):
    return sum(self.statuses.values()) / self.seconds

  def percentile(self, q):
    return float(np.percentile(self.latencies, q)) if self.latencies else float('nan')

  @property
  def share_503(self):
    return self.statuses.get(503, 0) / max(1, sum(self.statuses.values()))


def load(address, bodies, clients, seconds, path='/v1/colorize', timeout=300.0):
  """`clients` threads posting the bodies in turn for `seconds` (each on one kept-alive connection, waiting as
  Retry-After says after a 503), while /healthz is asked every 0.5 s on its own connection. Statuses counted;
  0 means no answer."""
  check_loopback(address[0])
  stop = time.monotonic() + seconds
  statuses, latencies = {}, []
  health = {'worst': 0.0, 'failures': 0}
  lock = threading.Lock()

  def client(k):
    sock, i = None, k
    while time.monotonic() < stop:
      for fresh in (sock is None, True):   # a kept-alive connection the server closed while idle: reconnect once
        if fresh:
          if sock is not None:
            sock.close()
          sock = socket.create_connection(address, timeout=timeout)
        started = time.perf_counter()
        try:
          sock.sendall(request('POST', path, bodies[i % len(bodies)]))
          answer = read_answer(sock, started)
        except OSError:
          answer = Answer(0, {}, b'', 0.0)
        if answer.status or fresh:
          break
      with lock:
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        if answer.status == 200:
          latencies.append(answer.seconds)
      if answer.status == 0 or answer.headers.get('connection') == 'close':
        sock.close()
        sock = None
      if answer.status == 503:   # a well-behaved client waits as told before it retries
        time.sleep(max(0.0, min(float(answer.headers.get('retry-after', 1)), stop - time.monotonic())))
      i += clients
    if sock:
      sock.close()

  def watch():
    while time.monotonic() < stop:
      try:
        answer = get(address, '/healthz', timeout=10)
        ok = answer.status == 200
        health['worst'] = max(health['worst'], answer.seconds)
      except OSError:
        ok = False
      health['failures'] += not ok
      time.sleep(0.5)

  started = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients + 1) as pool:
    jobs = [pool.submit(client, k) for k in range(clients)] + [pool.submit(watch)]
    for job in jobs:
      job.result()
  return LoadReport(time.perf_counter() - started, statuses, latencies, health['worst'], health['failures'])
