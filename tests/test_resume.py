"""Scale contract of the Beam job: a SIGKILLed job resumes to the same bytes; shards are the same on every runner.

Real subprocesses of `python -m pipeline.preprocess`, killed with SIGKILL (their whole process group) while they
run, then run again with the same command; tiny photos so that each run takes seconds.
"""
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jobs import committed as _committed, kill_when as _kill_when, run as _run, start as _start
from paths import REPO
from pipeline import config, preprocess, resume, schema, shards, sources

PHOTOS = 24
FLAGS = ['--embedder', 'mobilenet_v2', '--embedder-weights', 'random', '--image-size', '32', '--num-shards', '2',
         '--val-fraction', '0.25', '--unit-size', '4', '--embedder-batch-size', '3', '--runner', 'DirectRunner']
UNITS = shards.num_units(PHOTOS + 1, 2, 4)  # the photos and one empty file


def _photos(folder):
  rng = np.random.default_rng(0)
  for i in range(PHOTOS):
    sub = folder / f'n0144{i % 3}764'  # ImageNet-like sub-folders: listed in parallel, one per element
    sub.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), np.uint8)).save(sub / f'p{i:02d}.png')
  (folder / 'empty.jpg').write_bytes(b'')
  return folder


def _files(out):
  """{name: sha256} of everything in an output folder (hidden work files included)."""
  return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(out.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def clean(tmp_path_factory):
  """An uninterrupted in-process run: the reference output."""
  root = tmp_path_factory.mktemp('resume')
  src = _photos(root / 'in')
  out = root / 'clean'
  summary = preprocess.run(['prog', '--input', str(src), '--output', str(out)] + FLAGS)
  return src, out, summary


def _command(src, out, *extra):
  return [sys.executable, '-m', 'pipeline.preprocess', '--input', str(src), '--output', str(out)] + FLAGS + list(extra)


def test_clean_run_accounts_for_every_input(clean):
  _, out, summary = clean
  assert summary['read'] == PHOTOS + 1 and sum(summary['written'].values()) == PHOTOS
  assert summary['failed'] == {'empty_file': 1}
  names = set(_files(out))
  assert names == {'metadata.json', 'failures.jsonl', 'train-00000-of-00002.tfrecord',
                   'train-00001-of-00002.tfrecord', 'val-00000-of-00001.tfrecord'}  # no work files left
  meta = schema.read_metadata(str(out))
  assert meta['job']['inputs'] == PHOTOS + 1 and meta['job']['fingerprint']


MULTI = ['--direct_num_workers', '2', '--direct_running_mode', 'multi_processing']


# Kill points: before any unit is committed (listing, model load), after the first unit, with one unit left. The
# runners alternate (in-process, multi_processing): the shards must not depend on which runner wrote which unit.
@pytest.mark.parametrize('units_done, first, second', [(0, [], []), (1, MULTI, []), (UNITS - 1, [], MULTI)])
def test_sigkill_then_same_command_gives_the_clean_output(clean, tmp_path, units_done, first, second):
  src, reference, _ = clean
  out = tmp_path / 'out'
  proc = _start(_command(src, out, *first), tmp_path)
  if units_done == 0:
    ready = lambda: (out / resume.WORK / resume.JOB_FILE).exists()
  else:
    ready = lambda: _committed(out) >= units_done
  assert _kill_when(proc, ready), 'the job finished before the kill point'
  assert not (out / schema.METADATA_FILE).exists()
  assert not list(out.glob('*.tfrecord'))  # nothing under a final shard name before every unit is committed
  before = _committed(out)

  if units_done == 1:
    # Another command on the unfinished directory is refused, naming the directory, the change and the fix.
    proc2 = _run(_command(src, out, '--num-shards', '3'), tmp_path)
    assert proc2.returncode == 2, proc2.stderr[-2000:]
    assert f'{out} holds an unfinished job with other flags' in proc2.stderr
    assert 'num_shards: 2 then, 3 now' in proc2.stderr and 'run that command again' in proc2.stderr
    # So are other inputs (found by the listing, inside the job).
    extra = src / 'extra.png'
    shutil.copy(next(src.rglob('p00.png')), extra)
    try:
      proc2 = _run(_command(src, out), tmp_path)
    finally:
      extra.unlink()
    assert proc2.returncode == 2, proc2.stderr[-2000:]
    assert 'the inputs changed since this job started' in proc2.stderr and str(out) in proc2.stderr

  proc = _run(_command(src, out, *second), tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  if before:
    assert f'resumed  {before} of {UNITS} work units were already done' in proc.stdout, proc.stdout
  assert _files(out) == _files(reference)

  if units_done == UNITS - 1:
    proc = _run(_command(src, out, '--val-fraction', '0.5'), tmp_path)
    assert proc.returncode == 2 and 'already holds the finished output of another job' in proc.stderr


# The unit and split of keys, computed in another process (the job's workers are processes of their own).
PLACES = """
import json, sys
from pipeline import shards, sources
keys, units = json.loads(sys.argv[1]), int(sys.argv[2])
print(json.dumps([[shards.unit_of(k, units), sources.split_of(k, 0.3)] for k in keys]))
"""


def test_unit_and_split_of_a_key_are_the_same_in_every_process():
  """Each process salts Python's str hash with its own PYTHONHASHSEED: a unit or split derived from it would put a
  key elsewhere in each worker, and a resumed job would redo or lose inputs. Here the places of the same keys, in
  processes of other seeds, are this process's."""
  units = shards.num_units(1_000_000, 8, 256)
  assert units == 8 * 489
  keys = ['n01440764/n01440764_10026.JPEG', 'ünï/côdé.jpg', 'a b/"q".png'] + [f'k{i}' for i in range(200)]
  here = [[shards.unit_of(k, units), sources.split_of(k, 0.3)] for k in keys]
  assert {split for _, split in here} == {'train', 'val'}
  for seed in ('0', '1', '4242'):
    proc = subprocess.run([sys.executable, '-c', PLACES, json.dumps(keys), str(units)], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO)), timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == here, f'PYTHONHASHSEED={seed}'
  spread = np.bincount([shards.shard_of(shards.unit_of(f'k{i}', units), 8) for i in range(8000)], minlength=8)
  assert spread.min() > 850  # about 1,000 each
  assert shards.units_of_shard(3, 8, range(24)) == [3, 11, 19]

def test_a_job_started_by_an_earlier_version_resumes_with_this_one():
  """The command a job records (.work/job.json, metadata.json) and its fingerprint, as the code before the config
  became a dataclass derived them for this command line: were they to move, that job's resume would be refused."""
  cfg, beam_args = preprocess.parse(
      ['prog', '--input', '/a', '--input', 'gs://b/c', '--output', 'gs://x/y/', '--embedder', 'mobilenet_v2',
       '--embedder-weights', 'random', '--image-size', '64', '--num-shards', '3', '--val-fraction', '0.3',
       '--unit-size', '4', '--embedder-batch-size', '3', '--max-pixels', '1000', '--embedder-precision',
       'bfloat16', '--runner', 'DirectRunner', '--direct_num_workers', '2'])
  command = config.command(config.resolve(cfg))
  assert command == {
      'embedder': 'mobilenet_v2', 'embedder_batch_size': 3, 'embedder_precision': 'bfloat16',
      'embedder_weights': 'random', 'image_size': 64, 'inputs': ['/a', 'gs://b/c'], 'max_pixels': 1000,
      'num_shards': 3, 'tfds': None, 'tfds_split': 'train', 'unit_size': 4, 'val_fraction': 0.3, 'val_shards': 1}
  assert resume.fingerprint(command) == '29d427509ed3fab4dc970d5c4c9fc0830af5e98973aa03bfa60cf7de87e68fcc'
  assert beam_args == ['--runner', 'DirectRunner', '--direct_num_workers', '2']   # Beam's options: not in it
  # TFDS: the slices enter as their fingerprint once the graph is built (the same value the earlier code stored).
  slices = [('tiny_photos-train.tfrecord-00000-of-00001', 0, 2), ('tiny_photos-train.tfrecord-00000-of-00001', 2, 2)]
  tfds, _ = preprocess.parse(['prog', '--tfds', 'tiny_photos', '--tfds-split', 'train[:50%]', '--output', '/o',
                              '--val-fraction', '0'])
  with_slices = config.command(dataclasses.replace(config.resolve(tfds), tfds_slices=slices))
  assert with_slices == dict(config.command(config.resolve(tfds)), tfds_slices=resume.fingerprint(slices))
  assert resume.fingerprint(config.command(config.resolve(tfds))) == (
      'd210f441dfe79cdfedb1388fd56932618a6696de356e785cec9e97b43bdf5943')
