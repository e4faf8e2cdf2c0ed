r"""Colouring job benchmark: the job's images/s beside the bare export's, on the same photos, in one run.

  .venv/bin/python benchmarks/batch.py --work /work/batch-bench [--model EXPORT_DIR] [--photos 1000] \
      [--repeats 3] [--batch-size 8] [--beam-args "--runner DirectRunner"]

Photos: the first N of ../shared/data/imagenet-sample (one per ImageNet class, their own mixed sizes: 75x56 to
2400x1600 px, 0.2 MP on average) made grey and saved as JPEG (quality 90) under WORK/photos-N (made once),
as an archive's scans are. Then, alternately, `repeats` times each:
  bare model  the export's own `serving_default` called in a loop in this process, batches of --batch-size
              of the photos' bytes already in memory (no reading, no checks, no writing)
  job         `python -m serving.batch --model ... --input WORK/photos-N --output WORK/out-K` in a subprocess
              (reading, the CLI's checks, the model behind RunInference, writing, the work units' commits);
              its images/s as it reports it (the pipeline's whole run: listing, model load, writes), the same
              without the one-off model load it reports (once per worker: a long job amortises it; the bare
              loop's model is loaded before its clock starts), and over the whole command (Python, TensorFlow
              and Beam start-up too)
and prints each pass, the medians and the ratios (job / bare: the target is >= 0.8), the job's images per
CPU-second (all its processes, from getrusage) and what it means per million photos on CPU workers. Without
--model it builds a full-size model first (benchmarks/sample_model.py: width 1.0, Inception-ResNet-v2 embedder
with random weights; speed does not depend on what the weights learnt).
"""
import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.path.join(REPO, '..', 'shared', 'data', 'imagenet-sample')


def make_photos(work, n):
  folder = os.path.join(work, f'photos-{n}')
  names = sorted(os.listdir(SHARED))[:n]
  if os.path.isdir(folder) and len(os.listdir(folder)) == len(names):
    return folder
  os.makedirs(folder, exist_ok=True)
  for name in names:
    buf = io.BytesIO()
    with Image.open(os.path.join(SHARED, name)) as img:
      img.convert('L').save(buf, 'JPEG', quality=90)
    with open(os.path.join(folder, os.path.splitext(name)[0] + '.jpg'), 'wb') as f:
      f.write(buf.getvalue())
  return folder


def bare(colorizer, images, batch_size):
  """Seconds of serving_default over all images, in batches, bytes already in memory."""
  import tensorflow as tf
  fn = colorizer.signature('serving_default')
  started = time.perf_counter()
  for i in range(0, len(images), batch_size):
    fn(image_bytes=tf.constant(images[i:i + batch_size]))['image_bytes'].numpy()
  return time.perf_counter() - started


def job(model, folder, out, batch_size, beam_args):
  """(the job's own summary, its seconds as it reports them, the model load's share of those, wall seconds of
  the command, CPU seconds of its processes)."""
  cmd = [sys.executable, '-m', 'serving.batch', '--model', model, '--input', folder, '--output', out,
         '--batch-size', str(batch_size)] + beam_args.split()
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  started = time.perf_counter()
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2'))
  wall = time.perf_counter() - started
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if proc.returncode:
    sys.exit(f'the job failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}')
  seconds = float(proc.stdout.split('  time     ')[1].split(' s,')[0])
  load = float(proc.stdout.split('loaded in ')[1].split(' s')[0]) if 'loaded in ' in proc.stdout else 0.0
  cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  with open(os.path.join(out, 'summary.json')) as f:
    return json.load(f), seconds, load, wall, cpu


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--work', default='/work/batch-bench')
  p.add_argument('--model', help='export directory (default: build a full-size one under --work first)')
  p.add_argument('--photos', type=int, default=1000)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--batch-size', type=int, default=8)
  p.add_argument('--beam-args', default='--runner DirectRunner')
  args = p.parse_args()
  os.makedirs(args.work, exist_ok=True)
  load = os.getloadavg()
  folder = make_photos(args.work, args.photos)
  model = args.model
  if not model:
    sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
    import sample_model
    model = sample_model.build(tempfile.mkdtemp(prefix='model-', dir=args.work), embedder='inception_resnet_v2',
                               width=1.0)
  from pipeline import quiet
  quiet.tensorflow()
  from serving import exported
  colorizer = exported.Colorizer(model)
  images = [open(os.path.join(folder, n), 'rb').read() for n in sorted(os.listdir(folder))]
  pixels = [Image.open(io.BytesIO(b)).size for b in images]
  print(f'{len(images)} grey JPEGs, {min(pixels)} to {max(pixels)} px, {np.mean([w * h for w, h in pixels]) / 1e6:.2f}'
        f' MP on average; model {colorizer.path} ({colorizer.info.get("model")}, width '
        f'{colorizer.info.get("width")}, embedder {colorizer.info["embedder"]["name"]}); batch {args.batch_size}; '
        f'{os.cpu_count()} cores, load average before {load[0]:.2f}', flush=True)
  bare(colorizer, images[:args.batch_size], args.batch_size)   # warm-up: the first call traces the graph
  rows = []
  for k in range(args.repeats):
    b = len(images) / bare(colorizer, images, args.batch_size)
    out = os.path.join(args.work, f'out-{os.getpid()}-{k}')
    summary, seconds, load, wall, cpu = job(model, folder, out, args.batch_size, args.beam_args)
    written = summary['counts']['written']
    assert written == len(images), summary
    row = {'bare': b, 'job': written / seconds, 'after_load': written / (seconds - load), 'command': written / wall,
           'per_cpu_s': written / cpu, 'load': os.getloadavg()[0]}
    rows.append(row)
    print(f'pass {k + 1}: bare model {b:.2f} images/s; job {row["job"]:.2f} images/s ({seconds:.0f} s; '
          f'{row["after_load"]:.2f} after its {load:.0f} s model load), whole '
          f'command {row["command"]:.2f} ({wall:.0f} s, {cpu:.0f} CPU-s: {row["per_cpu_s"]:.2f} images per '
          f'CPU-second); job / bare {row["job"] / b:.3f}, after the load {row["after_load"] / b:.3f}; load average '
          f'{row["load"]:.2f}', flush=True)
  med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
  ratio = lambda k: float(np.median([r[k] / r['bare'] for r in rows]))   # the median of the per-pass ratios
  print(f'\nmedians over {len(rows)} passes: bare model {med["bare"]:.2f} images/s, job {med["job"]:.2f} '
        f'({med["after_load"]:.2f} after its model load), whole command {med["command"]:.2f}; job / bare '
        f'{ratio("job"):.3f}, after the model load {ratio("after_load"):.3f} (target >= 0.8: the load is once per '
        f'worker, which a long job amortises), whole command / bare {ratio("command"):.3f}')
  per_vcpu_wall = med['after_load'] / os.cpu_count()
  print(f'per vCPU: {per_vcpu_wall:.3f} images/s (job images/s after the load / {os.cpu_count()} vCPUs) = '
        f'{1e6 / per_vcpu_wall / 3600:.0f} vCPU-hours per million photos; from CPU time, {med["per_cpu_s"]:.3f} images '
        f'per CPU-second = {1e6 / med["per_cpu_s"] / 3600:.0f} vCPU-hours per million photos')


if __name__ == '__main__':
  main()
