"""A colorizer export for the serving benchmarks, made as a user makes one, with the product's own commands in
subprocesses: the Beam job on the first scikit-image sample photos with random embedder weights, then two
training steps with hint points (so that the export has every signature). Latency and memory do not depend on
what the weights learnt. TensorFlow-free: the benchmarks that import this have it loaded already, or never load it.
"""
import os
import pathlib
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline import sources  # noqa: E402  (TF-free)


def _run(module, *args):
  proc = subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  if proc.returncode:
    sys.exit(f'python -m {module} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}')


def build(root, embedder='mobilenet_v2', width=0.25, photos=6):
  """Train and export under root; returns the export base directory (serving's --model)."""
  folder, records, job = (os.path.join(root, name) for name in ('photos', 'records', 'job'))
  os.makedirs(folder)
  for path in sources.sample_photos()[:photos]:
    shutil.copy(path, folder)
  _run('pipeline.preprocess', '--input', folder, '--output', records, '--embedder', embedder, '--embedder-weights',
       'random', '--runner', 'DirectRunner', '--num-shards', '1', '--val-fraction', '0.3')
  _run('trainer.task', '--data', records, '--job-dir', job, '--epochs', '1', '--steps-per-epoch', '2',
       '--batch-size', '2', '--width', str(width), '--val-images', '2', '--sample-images', '0', '--hints')
  return os.path.join(job, 'export')
