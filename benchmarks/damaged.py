r"""Damaged and unusual files (pipeline/damaged.py) through both Beam jobs: no crash, no hang, every input
accounted for, failures by reason.

  .venv/bin/python benchmarks/damaged.py --work /work/damaged-bench [--count 1000] [--seed 0] \
      [--model EXPORT_DIR] [--timeout 3600] [--beam-args "--runner DirectRunner"]

Writes COUNT seeded files of the 10 kinds under WORK/in-SEED-COUNT (made once), then runs, each in a subprocess
with a time limit (a hang fails it):
  preprocessing  python -m pipeline.preprocess (MobileNetV2 with random weights, 64 px canvas, one shard)
  colouring      python -m serving.batch (without --model: a small model built first, benchmarks/sample_model.py)
and prints per job: read, written, failed by reason, seconds; per kind, what became of its files; and the checks:
the job ended by itself with exit 0, read = COUNT, every file is exactly one record/image or one failure line
(by its name: the records' keys, the images' names). Exits 1 if any check fails. TensorFlow-free: the records are
read with pipeline.npreader.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
from pipeline import damaged, npreader, schema  # noqa: E402


def _run(cmd, timeout):
  started = time.time()
  try:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2'))
  except subprocess.TimeoutExpired:
    return None, timeout
  return proc, time.time() - started


def _failures(out):
  with open(os.path.join(out, schema.FAILURES_FILE)) as f:
    return [json.loads(line) for line in f]


def preprocessing(folder, out, timeout, beam_args):
  """(exit code, seconds, {file name: 'written' or reason}, what it read by its metadata)."""
  proc, seconds = _run([sys.executable, '-m', 'pipeline.preprocess', '--input', folder, '--output', out,
                        '--embedder', 'mobilenet_v2', '--embedder-weights', 'random', '--image-size', '64',
                        '--num-shards', '1'] + beam_args, timeout)
  if proc is None or proc.returncode:
    return proc, seconds, {}, 0
  outcome = collections.defaultdict(list)
  for split in schema.SPLITS:
    for record in npreader.records(out, split):
      outcome[os.path.basename(record['key'])].append('written')
  for f in _failures(out):
    outcome[os.path.basename(f['path'])].append(f['reason'])
  return proc, seconds, outcome, schema.read_metadata(out)['job']['inputs']


def colouring(folder, out, model, timeout, beam_args):
  proc, seconds = _run([sys.executable, '-m', 'serving.batch', '--model', model, '--input', folder, '--output',
                        out] + beam_args, timeout)
  if proc is None or proc.returncode:
    return proc, seconds, {}, 0
  outcome = collections.defaultdict(list)
  for name in os.listdir(out):
    if name.endswith('.jpg'):
      outcome[name[:-len('.jpg')]].append('written')
  for f in _failures(out):
    outcome[os.path.splitext(os.path.basename(f['path']))[0]].append(f['reason'])
  with open(os.path.join(out, 'summary.json')) as f:
    return proc, seconds, outcome, json.load(f)['counts']['read']


def report(job, manifest, result, by_stem=False):
  """Print the accounting of one job; returns the failed checks."""
  proc, seconds, outcome, read = result
  print(f'\n## {job} ({seconds:.0f} s)')
  if proc is None:
    return [f'{job}: no end within the time limit (a hang)']
  if proc.returncode:
    return [f'{job}: exit {proc.returncode}: {proc.stderr.strip()[-1500:]}']
  names = {(os.path.splitext(n)[0] if by_stem else n): n for n in manifest}
  problems = []
  if read != len(manifest):
    problems.append(f'{job}: read {read} of {len(manifest)}')
  for key, n in names.items():
    if len(outcome.get(key, [])) != 1:
      problems.append(f'{job}: {n} is {outcome.get(key, [])} (want exactly one record or failure line)')
  extra = set(outcome) - set(names)
  if extra:
    problems.append(f'{job}: outcomes for files not in the corpus: {sorted(extra)[:5]}')
  totals = collections.Counter(o for key in names for o in outcome.get(key, []))
  print(f'read {read}, written {totals.pop("written", 0)}, failed {sum(totals.values())}: '
        + ', '.join(f'{r} {c}' for r, c in sorted(totals.items())))
  per_kind = collections.defaultdict(collections.Counter)
  for key, n in names.items():
    per_kind[manifest[n]].update(outcome.get(key, ['MISSING']))
  print('| kind | files | outcome |\n|---|---|---|')
  for kind in damaged.KINDS:
    c = per_kind[kind]
    print(f'| {kind} | {sum(c.values())} | ' + ', '.join(f'{o} {k}' for o, k in c.most_common()) + ' |')
  return problems


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--work', default='/work/damaged-bench')
  p.add_argument('--count', type=int, default=1000)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--model', help='export directory for the colouring job (default: build a small one first)')
  p.add_argument('--timeout', type=float, default=3600, help='seconds each job may take before it counts as hung')
  p.add_argument('--beam-args', default='--runner DirectRunner')
  args = p.parse_args()
  folder = os.path.join(args.work, f'in-{args.seed}-{args.count}')
  if os.path.isfile(os.path.join(folder, 'manifest.json')):
    with open(os.path.join(folder, 'manifest.json')) as f:
      manifest = json.load(f)
  else:
    manifest = damaged.write(folder, args.count, args.seed)
  model = args.model
  if not model:
    import sample_model
    model = sample_model.build(tempfile.mkdtemp(prefix='model-', dir=args.work))
  tag = f'{os.getpid()}'
  print(f'{len(manifest)} damaged files (seed {args.seed}) in {folder}; load average {os.getloadavg()[0]:.2f}')
  beam_args = args.beam_args.split()
  problems = report('preprocessing (pipeline.preprocess)', manifest, preprocessing(
      folder, os.path.join(args.work, f'records-{tag}'), args.timeout, beam_args))
  problems += report('colouring (serving.batch)', manifest, colouring(
      folder, os.path.join(args.work, f'coloured-{tag}'), model, args.timeout, beam_args), by_stem=True)
  print('\nchecks: ' + ('all passed: no crash, no hang, every input one record/image or one failure line'
                        if not problems else '\n  '.join(['FAILED'] + problems)))
  sys.exit(1 if problems else 0)


if __name__ == '__main__':
  main()
