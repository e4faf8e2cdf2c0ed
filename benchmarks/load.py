r"""Load and hostile clients against `python -m serving.app` on 127.0.0.1 (loopback only; bounded in count and time).

  .venv/bin/python benchmarks/load.py [--model EXPORT_DIR] [--clients 64] [--seconds 60] [--slow 1000]

Starts the server as its own process (the real command line, default limits), then, while sampling the
server's RSS every 0.2 s:
  1. each hostile case once (malformed, negative, huge and lying Content-Length; chunked; malformed JSON,
     base64, image; an image bomb), printing status and time;
  2. --slow connections that send headers (or announce a body) and stall, with /healthz timed meanwhile, and
     how many the server has closed after its time-outs;
  3. --clients concurrent clients posting grey 512 px JPEGs (and a 1024 px PNG) for --seconds:
     requests/s, p50/p99 latency, 503 share, worst /healthz time.
Ends with the server's peak RSS. Without --model it builds a small model first (benchmarks/sample_model.py).
"""
import argparse
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent

import psutil

import hostile
import photos
import sample_model

HOST = '127.0.0.1'   # loopback only: hostile.check_loopback refuses anything else


class Server:
  """python -m serving.app in its own process, with its RSS sampled until stopped."""

  def __init__(self, model_dir, extra=()):
    with socket.socket() as s:
      s.bind((HOST, 0))
      self.address = (HOST, s.getsockname()[1])
    self.proc = subprocess.Popen([sys.executable, '-m', 'serving.app', '--model', model_dir, '--host', HOST,
                                  '--port', str(self.address[1]), *extra], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while True:
      try:
        if hostile.get(self.address, '/healthz', timeout=5).status == 200:
          break
      except OSError:
        if self.proc.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError('the server did not come up') from None
        time.sleep(0.5)
    self.ps = psutil.Process(self.proc.pid)
    self.rss_start = self.rss_peak = self.ps.memory_info().rss
    self._stop = threading.Event()
    threading.Thread(target=self._sample, daemon=True).start()

  def _sample(self):
    while not self._stop.wait(0.2):
      try:
        self.rss_peak = max(self.rss_peak, self.ps.memory_info().rss)
      except psutil.Error:
        return

  def close(self):
    self._stop.set()
    self.proc.terminate()
    return self.proc.wait(timeout=90)


def mb(n):
  return f'{n / 2 ** 20:.0f} MB'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model', help='export directory (default: build a small model first)')
  parser.add_argument('--clients', type=int, default=64)
  parser.add_argument('--seconds', type=float, default=60.0)
  parser.add_argument('--slow', type=int, default=1000, help='slow connections (at most 5000)')
  parser.add_argument('--server-args', default='', help='extra flags for serving.app, e.g. "--max-pending 16"')
  args = parser.parse_args()
  args.slow = min(args.slow, 5000)
  args.seconds = min(args.seconds, 600)
  model_dir = args.model or sample_model.build(tempfile.mkdtemp(prefix='bench-load-'))
  print(f'server: python -m serving.app --model {model_dir} {args.server_args} on {HOST}; '
        f'{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}', flush=True)
  server = Server(model_dir, args.server_args.split())
  address = server.address
  try:
    photo, png = photos.grey_jpeg(512), photos.grey_png(1024)
    print('\nhostile requests (status, seconds):')
    cases = {
        'Content-Length: -1': hostile.request('POST', '/v1/colorize', photo, length=-1),
        'no Content-Length': hostile.request('POST', '/v1/colorize', length=False),
        'Content-Length: 10^12, no body': hostile.request('POST', '/v1/colorize', length=10 ** 12),
        'Content-Length: 1000, 10 bytes sent (waits for the body time-out)':
            hostile.request('POST', '/v1/colorize', b'0123456789', length=1000),
        'chunked photo': hostile.chunked('POST', '/v1/colorize', photo),
        'chunked, 100 MB': hostile.chunked('POST', '/v1/colorize', b'\0' * 100_000_000, chunk=1 << 20),
        'malformed JSON': hostile.request('POST', '/v1/models/colorizer:predict', b'{"instances": ['),
        'malformed base64': hostile.request('POST', '/v1/models/colorizer:predict', b'{"instances":[{"b64":"a"}]}'),
        'truncated JPEG': hostile.request('POST', '/v1/colorize', hostile.truncated_jpeg(photo)),
        'PNG bomb (10 gigapixels claimed)': hostile.request('POST', '/v1/colorize', hostile.png_bomb()),
    }
    for name, data in cases.items():
      try:
        answer = hostile.raw(address, data, timeout=120)
        print(f'  {name:70s} {answer.status:4d} {answer.seconds:7.2f}', flush=True)
      except OSError as e:
        print(f'  {name:70s} {type(e).__name__}: {e}', flush=True)

    print(f'\n{args.slow} slow connections (half stall in their headers, half announce a body never sent):')
    socks = hostile.slow_clients(address, args.slow // 2, partial=b'POST /v1/colorize HTTP/1.1\r\nHost: x\r\n')
    socks += hostile.slow_clients(address, args.slow - args.slow // 2)
    health = hostile.get(address, '/healthz', timeout=10)
    print(f'  /healthz meanwhile: {health.status} in {health.seconds * 1000:.0f} ms; ', end='', flush=True)
    t = time.monotonic()
    closed = hostile.closed_by_server(socks, timeout=60)
    print(f'{closed} of {len(socks)} closed by the server within {time.monotonic() - t:.1f} s', flush=True)

    print(f'\n{args.clients} concurrent clients for {args.seconds:.0f} s (512 px JPEG and 1024 px PNG, grey):')
    report = hostile.load(address, [photo, png], args.clients, args.seconds)
    print(f'  {report.requests_per_second:.2f} requests/s; statuses {dict(sorted(report.statuses.items()))}; '
          f'503 share {report.share_503:.1%}; latency of 200s p50 {report.percentile(50):.2f} s, '
          f'p99 {report.percentile(99):.2f} s; /healthz worst {report.health_worst * 1000:.0f} ms, '
          f'{report.health_failures} failures', flush=True)
  finally:
    code = server.close()
  print(f'\nserver RSS: {mb(server.rss_start)} after start, peak {mb(server.rss_peak)}; exit code after SIGTERM '
        f'{code}; load average {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  main()
