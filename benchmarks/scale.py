r"""Scale benchmark: peak memory and speed of the real preprocessing command as the number of inputs grows.

  .venv/bin/python benchmarks/scale.py --work /work/scale --sizes 1000 4000 16000 100000 \
      [--embedder mobilenet_v2] [--weights random] [--image-size 128] [--beam-args "--runner DirectRunner"]

Makes N distinct inputs from ../shared/data/imagenet-sample (crops, flips and quarter turns of its 1,000 photos,
re-encoded as JPEG: distinct bytes and keys) under WORK/inputs/dNNN/ (1,000 per folder, as ImageNet's synset
folders; made once and reused), then runs `python -m pipeline.preprocess` on the first N of them under
`/usr/bin/time -v` and prints for each N: peak RSS (the largest process: with multi_processing, the largest
worker; and the whole process tree's, sampled each second), images/s, bytes written, seconds. Not a timed test: the figures go into BENCHMARKS.md.
"""
import argparse
import io
import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, '..', 'shared', 'data', 'imagenet-sample')
PER_FOLDER = 1000


def variant(img, i):
  """The i-th variant of a photo: a crop of 70-95 % of each side at a seeded place, maybe flipped and turned."""
  rng = np.random.default_rng(i)
  w, h = img.size
  cw, ch = int(w * rng.uniform(0.7, 0.95)), int(h * rng.uniform(0.7, 0.95))
  x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
  out = img.crop((x, y, x + cw, y + ch))
  if rng.random() < 0.5:
    out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  turn = int(rng.integers(0, 4))
  if turn:
    out = out.transpose([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270][turn - 1])
  buf = io.BytesIO()
  out.save(buf, 'JPEG', quality=90)
  return buf.getvalue()


def make_inputs(work, n):
  """WORK/inputs/dNNN/ with PER_FOLDER files each, at least n in all; photo p's variants are spread over folders."""
  photos = sorted(os.listdir(SHARED))
  root = os.path.join(work, 'inputs')
  made = 0
  for folder in range((n + PER_FOLDER - 1) // PER_FOLDER):
    path = os.path.join(root, f'd{folder:03d}')
    if os.path.isdir(path) and len(os.listdir(path)) == PER_FOLDER:
      continue
    os.makedirs(path, exist_ok=True)
    for j, name in enumerate(photos[:PER_FOLDER]):
      target = os.path.join(path, f'{os.path.splitext(name)[0]}_v{folder:03d}.JPEG')
      if os.path.exists(target):
        continue
      with Image.open(os.path.join(SHARED, name)) as img:
        data = variant(img.convert('RGB'), folder * PER_FOLDER + j)
      with open(target + '.tmp', 'wb') as f:
        f.write(data)
      os.rename(target + '.tmp', target)
      made += 1
    print(f'inputs: {path} ready', flush=True)
  return root, made


def tree_rss_kb(pid):
  """Resident kB of pid and all its descendants now, from /proc (0 for a process that is gone)."""
  total, todo = 0, [pid]
  while todo:
    p = todo.pop()
    try:
      with open(f'/proc/{p}/status') as f:
        total += next((int(line.split()[1]) for line in f if line.startswith('VmRSS:')), 0)
      for task in os.listdir(f'/proc/{p}/task'):
        with open(f'/proc/{p}/task/{task}/children') as f:
          todo += [int(c) for c in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
      pass
  return total


class TreeSampler(threading.Thread):
  """Samples the whole process tree's RSS every second: with multi_processing, the sum over the workers (GNU time
  reports only the largest single process)."""

  def __init__(self, pid):
    super().__init__(daemon=True)
    self.pid, self.peak_kb, self.stop = pid, 0, threading.Event()

  def run(self):
    while not self.stop.wait(1.0):
      self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))


def folder_inputs(root, n):
  """--input flags for the first n inputs under root: the root itself when that is all of its folders."""
  folders = [os.path.join(root, f'd{i:03d}') for i in range((n + PER_FOLDER - 1) // PER_FOLDER)]
  return ['--input', root] if len(folders) == len(os.listdir(root)) else sum((['--input', f] for f in folders), [])


def measured(cmd, log, label, env=None):
  """Run cmd from the repository under `/usr/bin/time -v` (output to `log`), its process tree sampled; exits on
  a failure. Returns (seconds, peak RSS of the largest process in kB, of the tree in kB, CPU seconds)."""
  start = time.time()
  with open(log, 'w') as f:
    proc = subprocess.Popen(['/usr/bin/time', '-v'] + cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    proc.wait()
    sampler.stop.set()
  seconds = time.time() - start
  text = open(log).read()
  if proc.returncode:
    sys.exit(f'{label}: exit {proc.returncode}, see {log}')
  rss_kb = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', text).group(1))
  # CPU seconds (all processes of the job): on a shared machine, images per CPU-second is the per-core rate.
  cpu = sum(float(re.search(rf'{kind} time \(seconds\): ([0-9.]+)', text).group(1)) for kind in ('User', 'System'))
  return seconds, rss_kb, sampler.peak_kb, cpu


def markdown_table(header, rows):
  """Print a Markdown table (header cells, rows of cells), as BENCHMARKS.md takes it."""
  print('| ' + ' | '.join(header) + ' |\n|' + '---|' * len(header))
  for cells in rows:
    print('| ' + ' | '.join(cells) + ' |')


def run(work, root, n, args):
  out = os.path.join(work, f'out-{args.tag}-{n}')
  cmd = [sys.executable, '-m', 'pipeline.preprocess', *folder_inputs(root, n), '--output', out, '--embedder',
         args.embedder, '--embedder-weights', args.weights, '--image-size', str(args.image_size), '--num-shards',
         str(args.num_shards)] + args.beam_args.split()
  seconds, rss_kb, tree_kb, cpu = measured(cmd, os.path.join(work, f'run-{args.tag}-{n}.log'), n)
  meta = json.load(open(os.path.join(out, 'metadata.json')))
  written = sum(meta['counts'].values())
  size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
  row = {'n': n, 'peak_rss_gb': round(rss_kb / 2 ** 20, 3), 'peak_tree_rss_gb': round(tree_kb / 2 ** 20, 3),
         'images_per_s': round(written / seconds, 2),
         'bytes_written': size, 'seconds': round(seconds, 1), 'cpu_seconds': round(cpu, 1),
         'images_per_cpu_s': round(written / cpu, 2), 'written': written,
         'failed': meta['failures']['count'], 'output': out}
  print(json.dumps(row), flush=True)
  return row


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--work', default='/work/scale')
  p.add_argument('--sizes', type=int, nargs='+', default=[1000, 4000, 16000, 100000])
  p.add_argument('--embedder', default='mobilenet_v2')
  p.add_argument('--weights', default='random')
  p.add_argument('--image-size', type=int, default=128)
  p.add_argument('--num-shards', type=int, default=8)
  p.add_argument('--beam-args', default='--runner DirectRunner')
  p.add_argument('--tag', default='run', help='names the output folders and logs under --work')
  p.add_argument('--make-only', action='store_true', help='only make the inputs')
  args = p.parse_args()
  os.makedirs(args.work, exist_ok=True)
  root, made = make_inputs(args.work, max(args.sizes))
  print(f'inputs under {root} ({made} made now)', flush=True)
  if args.make_only:
    return
  rows = [run(args.work, root, n, args) for n in args.sizes]
  markdown_table(['N', 'peak RSS, largest process (GiB)', 'all processes, sampled (GiB)', 'images/s',
                  'images per CPU-second', 'bytes written', 'seconds'],
                 [[f'{r["n"]:,}', f'{r["peak_rss_gb"]:.3f}', f'{r["peak_tree_rss_gb"]:.3f}',
                   f'{r["images_per_s"]:.1f}', f'{r["images_per_cpu_s"]:.1f}', f'{r["bytes_written"] / 1e9:.2f} GB',
                   f'{r["seconds"]:.0f}'] for r in rows])


if __name__ == '__main__':
  main()
