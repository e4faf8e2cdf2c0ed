r"""Colouring job scale benchmark: peak memory of `python -m serving.batch` as the number of inputs grows.

  .venv/bin/python benchmarks/batch_scale.py --work /work/batch-scale --sizes 1000 20000 [--model EXPORT_DIR] \
      [--beam-args "--runner DirectRunner"]

Makes N distinct tiny grey JPEGs (16-64 px a side: the count is what is measured, not the pixels) under
WORK/tiny/dNNN/, 1,000 per folder (made once and reused), then runs the job on the first N of them (a multiple
of 1,000: whole folders are its --input) under `/usr/bin/time -v` and prints for each N: peak RSS of the largest
process (GNU time) and of the whole process tree (sampled each second: benchmarks/scale.py's TreeSampler),
images/s and seconds, and the growth from the first N (the target: within +10 %). Without --model it builds a
small model first (benchmarks/sample_model.py: the model's size does not grow with N, so a small one keeps 20,000
inputs quick).
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
from scale import PER_FOLDER, folder_inputs, markdown_table, measured  # noqa: E402


def make_inputs(work, n):
  root = os.path.join(work, 'tiny')
  for folder in range((n + PER_FOLDER - 1) // PER_FOLDER):
    path = os.path.join(root, f'd{folder:03d}')
    if os.path.isdir(path) and len(os.listdir(path)) == PER_FOLDER:
      continue
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(folder)
    for j in range(PER_FOLDER):
      h, w = rng.integers(16, 65, 2)
      y, x = np.mgrid[0:h, 0:w]
      grey = (rng.uniform(0, 255) + rng.uniform(-3, 3) * x + rng.uniform(-3, 3) * y + rng.normal(0, 10, (h, w)))
      Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).save(os.path.join(path, f'p{j:04d}.jpg'), quality=90)
  return root


def run(work, root, n, model, beam_args):
  out = os.path.join(work, f'out-{os.getpid()}-{n}')
  cmd = [sys.executable, '-m', 'serving.batch', '--model', model, *folder_inputs(root, n), '--output', out]
  seconds, rss_kb, tree_kb, cpu = measured(cmd + beam_args.split(), out + '.log', n,
                                           env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2'))
  with open(os.path.join(out, 'summary.json')) as f:
    counts = json.load(f)['counts']
  row = {'n': counts['read'], 'largest_gb': rss_kb / 2 ** 20, 'tree_gb': tree_kb / 2 ** 20, 'seconds': seconds,
         'images_per_s': counts['written'] / seconds, 'images_per_cpu_s': counts['written'] / cpu,
         'written': counts['written'], 'read': counts['read']}
  print(json.dumps(row), flush=True)
  return row


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--work', default='/work/batch-scale')
  p.add_argument('--sizes', type=int, nargs='+', default=[1000, 20000])
  p.add_argument('--model', help='export directory (default: build a small one under --work first)')
  p.add_argument('--beam-args', default='--runner DirectRunner')
  args = p.parse_args()
  if any(n % PER_FOLDER for n in args.sizes):   # whole folders are given as --input
    p.error(f'--sizes: each a multiple of {PER_FOLDER}')
  os.makedirs(args.work, exist_ok=True)
  root = make_inputs(args.work, max(args.sizes))
  model = args.model
  if not model:
    import sample_model
    model = sample_model.build(tempfile.mkdtemp(prefix='model-', dir=args.work))
  print(f'inputs under {root}; model {model}; load average before {os.getloadavg()[0]:.2f}', flush=True)
  rows = [run(args.work, root, n, model, args.beam_args) for n in args.sizes]
  first = rows[0]
  growth = lambda r, k: f'{100 * (r[k] / first[k] - 1):+.1f} %'
  markdown_table(['N', 'largest process (GiB)', 'vs first', 'all processes, sampled (GiB)', 'vs first', 'images/s',
                  'images per CPU-second', 'seconds'],
                 [[f'{r["n"]:,}', f'{r["largest_gb"]:.3f}', growth(r, 'largest_gb'), f'{r["tree_gb"]:.3f}',
                   growth(r, 'tree_gb'), f'{r["images_per_s"]:.1f}', f'{r["images_per_cpu_s"]:.1f}',
                   f'{r["seconds"]:.0f}'] for r in rows])


if __name__ == '__main__':
  main()
