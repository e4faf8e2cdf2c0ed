r"""Serving benchmark: end-to-end latency of serving_default beside the bare model, REST, and CLI throughput.

  .venv/bin/python benchmarks/serve.py [--model EXPORT_DIR] [--embedder inception_resnet_v2] [--repeats 15]

For grey JPEGs of 256, 512, 1024, 2048x1536, 2048 and 4096 pixels a side it prints p50 and p95 of
  bare model   the `raw` signature on the image's L canvas (embedder + colorizer: what training measures)
  end to end   the `serving_default` signature on the JPEG bytes (decode, letterbox, Lab, the same networks,
               un-letterbox, upsample, join with the full-resolution L, sRGB, JPEG encode)
  REST         POST /v1/colorize to `python -m serving.app` on 127.0.0.1 (a separate process)
and end to end / bare (targets: <= 1.15 at 512 px, <= 1.5 at 2048x1536; ARCHITECTURE.md). The two signatures are
timed alternately so that load from other processes hits both alike; the ratio is the median of the per-pair
ratios. Then the memory one 30-megapixel photo takes (peak RSS of a fresh process, above its warmed-up level). Then the CLI's throughput on a folder, and the server's with
concurrent clients (request batching). Without --model it first builds a model of the real architecture
(width 1.0) with a randomly initialised embedder: timing does not depend on the weights.
"""
import argparse
import concurrent.futures
import http.client
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import quiet

tf = quiet.tensorflow()

import numpy as np

import sample_model
from photos import grey_jpeg
from pipeline import colour, letterbox
from serving import colorize, exported

SIZES = ((256, 256), (512, 512), (1024, 1024), (1536, 2048), (2048, 2048), (4096, 4096))
BIG = 4_000_000   # pixels from which a size is timed with a third of the repeats (at least 5)


def l_canvas(jpeg, size):
  """The bare model's input for this JPEG: the letterboxed L canvas, made as the serving graph makes it."""
  rgb = tf.io.decode_jpeg(jpeg, channels=3)
  canvas, _ = letterbox.letterbox(rgb, size)
  return colour.rgb_to_lab(canvas / 255.0)[None, ..., :1]


def percentiles(seconds):
  ms = np.array(seconds) * 1000
  return np.percentile(ms, 50), np.percentile(ms, 95)


def timed(fn, repeats):
  for _ in range(2):
    fn()
  out = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return out


class RestServer:
  """python -m serving.app in its own process, so the client's work does not share its interpreter."""

  def __init__(self, model_dir):
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      self.port = s.getsockname()[1]
    self.proc = subprocess.Popen([sys.executable, '-m', 'serving.app', '--model', model_dir, '--port',
                                  str(self.port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
      try:
        if self.request('GET', '/healthz')[0] == 200:
          return
      except OSError:
        time.sleep(0.5)
    self.close()
    raise RuntimeError('the server did not come up within 300 s')

  def request(self, method, path, body=None):
    conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=120)
    try:
      conn.request(method, path, body=body)
      r = conn.getresponse()
      return r.status, r.read()
    finally:
      conn.close()

  def close(self):
    self.proc.terminate()
    self.proc.wait(timeout=30)


MEMORY = """
import resource, sys
sys.path[:0] = [{repo!r}, {bench!r}]
from pipeline import quiet
tf = quiet.tensorflow()
from serving import exported
from photos import grey_jpeg
colorizer = exported.Colorizer({model_dir!r})
colorizer.colorize([grey_jpeg(256)])   # warm: graphs built, weights in memory
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
photo = grey_jpeg(4736, 6336)           # 30.0 MP, a 6336 x 4736 scan
(out,) = colorizer.colorize([photo])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base // 1024, peak // 1024, len(out))
"""


def memory_30mp(model_dir):
  """Peak RSS above a warmed-up process for one 30 MP grey JPEG (in its own process: ru_maxrss only grows)."""
  code = MEMORY.format(repo=str(REPO), bench=str(REPO / 'benchmarks'), model_dir=model_dir)
  out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=600)
  if out.returncode:
    return f'failed: {out.stderr.strip().splitlines()[-1]}'
  base, peak, size = map(int, out.stdout.split()[-3:])
  return f'{peak - base} MB above the warmed-up process ({base} MB -> {peak} MB), {size / 1e6:.1f} MB of JPEG out'


def main():
  # argparse, not absl flags: the pipeline and trainer modules this may import define absl flags of these names.
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model', help='export directory to benchmark (default: build one first)')
  parser.add_argument('--embedder', default='inception_resnet_v2',
                      help='embedder of the model built when --model is not given')
  parser.add_argument('--repeats', type=int, default=15, help='timed calls per size and path, after 2 warm-ups')
  parser.add_argument('--cli-images', type=int, default=32, help='images in the folder the CLI colours')
  FLAGS = parser.parse_args()
  load_before = os.getloadavg()
  model_dir = FLAGS.model
  if not model_dir:
    root = tempfile.mkdtemp(prefix='bench-serve-')
    print(f'building a model (embedder {FLAGS.embedder}, random weights, width 1.0) in {root} (kept: pass '
          'its job/export as --model next time) ...', flush=True)
    model_dir = sample_model.build(root, embedder=FLAGS.embedder, width=1.0)
  colorizer = exported.Colorizer(model_dir)
  info = colorizer.info
  print(f'model {colorizer.path}: {info["model"]}/{info["loss"]}, embedder {info["embedder"]["name"]}, '
        f'width {info.get("width")}; TF {tf.__version__}, {os.cpu_count()} cores; load average before '
        f'{load_before[0]:.2f}', flush=True)
  raw, default = colorizer.signature('raw'), colorizer.signature('serving_default')
  server = RestServer(model_dir)
  try:
    print(f'\nlatency, ms (p50 / p95, batch 1; {FLAGS.repeats} calls, a third of them from 4 MP)')
    print(f'{"size":>10} {"bare model":>16} {"end to end":>16} {"e2e / bare":>11} {"REST upload":>16}')
    for height, width in SIZES:
      repeats = FLAGS.repeats if height * width < BIG else max(5, FLAGS.repeats // 3)
      jpeg = grey_jpeg(height, width)
      l = l_canvas(jpeg, colorizer.image_size)
      images = tf.constant([jpeg])
      bare, e2e = [], []
      for _ in range(2):   # warm-up
        raw(l=l)['ab'].numpy(), default(image_bytes=images)['image_bytes'].numpy()
      for _ in range(repeats):   # alternate, so background load hits both alike
        t = time.perf_counter()
        raw(l=l)['ab'].numpy()
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        default(image_bytes=images)['image_bytes'].numpy()
        e2e.append(time.perf_counter() - t)
      rest = timed(lambda: server.request('POST', '/v1/colorize', jpeg), repeats)
      (b50, b95), (e50, e95), (r50, r95) = percentiles(bare), percentiles(e2e), percentiles(rest)
      ratio = np.median(np.array(e2e) / np.array(bare))
      print(f'{width:>4}x{height:<5} {b50:>8.1f} / {b95:<6.1f} {e50:>8.1f} / {e95:<6.1f} {ratio:>11.3f} '
            f'{r50:>8.1f} / {r95:<6.1f}', flush=True)
    print(f'\nmemory of one 30 MP photo through serving_default: {memory_30mp(model_dir)}', flush=True)

    print('\nthroughput, images/s')
    scratch = tempfile.TemporaryDirectory(prefix='bench-cli-')
    folder = pathlib.Path(scratch.name)
    jpeg = grey_jpeg(512)
    for i in range(FLAGS.cli_images):
      (folder / 'in' / f'{i:03d}.jpg').parent.mkdir(exist_ok=True)
      (folder / 'in' / f'{i:03d}.jpg').write_bytes(jpeg)
    batch = tf.concat([l_canvas(jpeg, colorizer.image_size)] * 8, axis=0)
    bare8 = timed(lambda: raw(l=batch)['ab'].numpy(), 3)
    print(f'  bare model, batch of 8 canvases          {8 / np.median(bare8):6.2f}')
    e2e8 = timed(lambda: default(image_bytes=tf.constant([jpeg] * 8))['image_bytes'].numpy(), 3)
    print(f'  serving_default, batch of 8 512px JPEGs  {8 / np.median(e2e8):6.2f}')
    report = colorize.run(colorizer, [str(folder / 'in')], str(folder / 'out'), batch_size=8, progress=False)
    assert not report.failed, report.failed
    print(f'  CLI (serving.colorize.run), {len(report.written)} 512px JPEGs, batch 8: '
          f'{len(report.written) / report.seconds:6.2f}  (model loaded once before)')
    n = 16
    for clients in (1, 4):
      t = time.perf_counter()
      with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(lambda _: server.request('POST', '/v1/colorize', jpeg)[0], range(n)))
      assert statuses == [200] * n, statuses
      print(f'  REST upload, {n} 512px JPEGs, {clients} concurrent client(s): {n / (time.perf_counter() - t):6.2f}')
    scratch.cleanup()
  finally:
    server.close()
  print(f'\nload average after: {os.getloadavg()[0]:.2f} (other processes share these {os.cpu_count()} cores)')


if __name__ == '__main__':
  main()
