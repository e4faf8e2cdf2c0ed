"""The whole chain on gs:// paths, each stage run as users run it (a subprocess), against the GCS emulator.

photos in a bucket -> python -m pipeline.preprocess -> records in the bucket -> python -m trainer.task ->
SavedModel in the bucket (JOB/export/<version>/) -> python -m serving.colorize -> colour images in the bucket,
each the size of its input; python -m serving.evaluate reads the model and the photos from the bucket and
writes its report there. Small everywhere (64 px canvas, width 0.25, two steps): the point is the paths.
"""
import io
import json
import posixpath
import re
import shutil
import subprocess
import sys
import time

import pytest
from PIL import Image

from gcs import gcs  # noqa: F401  (the fixture)
from paths import REPO
from pipeline import sources

PHOTOS = sources.sample_photos()[:4]
SIZE = 64
TIMEOUT = 240

# What a clean stderr may still hold: tqdm's progress bars (the stage-specific lines are passed to _clean).
PROGRESS = re.compile(r'^(colouring|evaluating|epoch \d+/\d+):? .*\|')
# The trainer's own absl lines (its progress, and its loud warning that the records had a random embedder).
TRAINER_LOG = r'^[IW]\d{4} [\d:.]+\s+\d+ (task|data|export|encoder|loop)\.py:\d+\] '
# TensorFlow's C++ runtime, when the trainer parses the float16 embeddings; not a gs:// matter (local runs too).
ONEDNN_HALF = r'^E0000 .*\] oneDNN supports DT_HALF only on platforms with AVX-512\. Falling back'


def _run(gcs, cwd, *args):
  started = time.perf_counter()
  proc = subprocess.run([sys.executable, '-m', *args], capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT,
                        env=gcs.env(PYTHONPATH=str(REPO)))
  proc.seconds = time.perf_counter() - started
  return proc


def _lines(stderr):
  """stderr split into lines, tqdm's carriage-return redraws included."""
  return [line for line in re.split(r'[\r\n]+', stderr) if line.strip()]


def _clean(proc, allowed=()):
  """Assert a clean exit and a stderr holding nothing but progress bars and the `allowed` patterns."""
  assert proc.returncode == 0, proc.stderr[-4000:]
  stray = [line for line in _lines(proc.stderr)
           if not PROGRESS.search(line) and not any(re.search(p, line) for p in allowed)]
  assert not stray, '\n'.join(stray[:20])
  assert 'AdaptiveReadaheadCache' not in proc.stderr and 'Traceback' not in proc.stderr


@pytest.fixture(scope='module')
def chain(gcs, tmp_path_factory):
  """Every stage once, in order; {stage: CompletedProcess}. A failed stage ends the chain (later ones absent)."""
  local = tmp_path_factory.mktemp('photos')
  for path in PHOTOS:
    shutil.copy(path, local)
  cwd = tmp_path_factory.mktemp('cwd')  # nothing may land here: every path is in the bucket
  photos = gcs.upload_dir(local, 'photos') + '/'
  stages = {
      'preprocess': ['pipeline.preprocess', '--input', photos, '--output', gcs.url('records'), '--image-size',
                     str(SIZE), '--num-shards', '1', '--val-fraction', '0.3', '--embedder', 'mobilenet_v2',
                     '--embedder-weights', 'random', '--runner', 'DirectRunner'],
      'train': ['trainer.task', '--data', gcs.url('records'), '--job-dir', gcs.url('job'), '--epochs', '1',
                '--steps-per-epoch', '2', '--batch-size', '2', '--width', '0.25', '--val-images', '2',
                '--sample-images', '1'],
      'colorize': ['serving.colorize', '--model', gcs.url('job/export'), photos, '--output', gcs.url('colour')],
      'evaluate': ['serving.evaluate', '--model', gcs.url('job/export'), '--images', photos, '--report',
                   gcs.url('eval')],
  }
  done = {'photos': photos, 'cwd': cwd}
  for name, args in stages.items():
    done[name] = proc = _run(gcs, cwd, *args)
    print(f'{name}: exit {proc.returncode} in {proc.seconds:.1f} s', file=sys.stderr)
    if proc.returncode:
      break
  return done


def _stage(chain, name):
  if name not in chain:
    pytest.fail(f'{name} did not run: an earlier stage failed')
  return chain[name]


def test_preprocess_writes_records_to_the_bucket(gcs, chain):
  proc = _stage(chain, 'preprocess')
  _clean(proc)
  assert f'Preprocessing finished: {gcs.url("records")}' in proc.stdout and 'written  4' in proc.stdout
  names = gcs.ls('records/')
  assert {'records/metadata.json', 'records/failures.jsonl', 'records/train-00000-of-00001.tfrecord'} <= set(names)
  meta = json.loads(gcs.read('records/metadata.json'))
  assert meta['image_size'] == SIZE and meta['inputs'] == [chain['photos']]
  assert sum(meta['counts'].values()) == len(PHOTOS) and meta['counts']['train'] >= 1
  assert meta['embedder']['name'] == 'mobilenet_v2' and meta['embedder']['weights'] == 'random'


def test_trainer_writes_checkpoints_logs_and_a_savedmodel_to_the_bucket(gcs, chain):
  proc = _stage(chain, 'train')
  # The trainer warns loudly (by design) that the records were made with a random embedder.
  _clean(proc, allowed=[TRAINER_LOG, ONEDNN_HALF])
  assert 'Training finished at step 2' in proc.stdout, proc.stdout
  export = re.search(r'exported (gs://\S+)', proc.stdout).group(1)
  assert re.fullmatch(re.escape(gcs.url('job/export')) + r'/\d+', export), export
  version = export.rsplit('/', 1)[1]
  names = set(gcs.ls('job/'))
  assert {f'job/export/{version}/saved_model.pb', f'job/export/{version}/assets.extra/colorizer.json',
          'job/checkpoints/run.json', 'job/checkpoints/checkpoint'} <= names, sorted(names)
  assert any(n.startswith(f'job/export/{version}/variables/variables.data') for n in names), sorted(names)
  assert any(n.startswith('job/logs/train/') for n in names) and any(n.startswith('job/logs/val/') for n in names)
  info = json.loads(gcs.read(f'job/export/{version}/assets.extra/colorizer.json'))
  assert info['image_size'] == SIZE and info['step'] == 2
  assert info['checkpoint'].startswith(gcs.url('job/checkpoints') + '/')
  assert not list(chain['cwd'].iterdir())  # nothing written locally


def test_colorize_writes_colour_images_of_the_inputs_size_to_the_bucket(gcs, chain):
  proc = _stage(chain, 'colorize')
  _clean(proc)
  assert f'Coloured {len(PHOTOS)} image(s) into {gcs.url("colour")}' in proc.stdout, proc.stdout
  names = gcs.ls('colour/')
  expected = sorted('colour/' + posixpath.splitext(posixpath.basename(p))[0] + '.jpg' for p in PHOTOS)
  assert names == expected
  for path in PHOTOS:
    stem = posixpath.splitext(posixpath.basename(path))[0]
    with Image.open(path) as source, Image.open(io.BytesIO(gcs.read(f'colour/{stem}.jpg'))) as out:
      assert out.format == 'JPEG' and out.mode == 'RGB' and out.size == source.size, stem


def test_evaluate_reads_model_and_photos_from_the_bucket_and_writes_its_report_there(gcs, chain):
  proc = _stage(chain, 'evaluate')
  _clean(proc)
  assert f'{len(PHOTOS)} image(s) evaluated, 0 skipped (greyscale), 0 failed.' in proc.stdout, proc.stdout
  assert 'PSNR (dB)' in proc.stdout
  assert gcs.ls('eval/') == ['eval/per_image.csv', 'eval/report.html', 'eval/summary.json']
  summary = json.loads(gcs.read('eval/summary.json'))
  assert summary['images'] == len(PHOTOS) and summary['model']['path'].startswith(gcs.url('job/export') + '/')
  assert summary['metrics']['model']['n'] == len(PHOTOS)


def test_trainer_names_a_missing_bucket_in_one_line(gcs, tmp_path):
  proc = _run(gcs, tmp_path, 'trainer.task', '--data', 'gs://no-such-bucket/records', '--job-dir', gcs.url('job-x'),
              '--epochs', '1', '--steps-per-epoch', '1', '--batch-size', '2', '--width', '0.25')
  assert proc.returncode == 2, proc.stderr[-4000:]
  assert proc.stderr.startswith('error: ') and proc.stderr.count('\n') == 1, proc.stderr[-4000:]
  assert 'gs://no-such-bucket/records' in proc.stderr and 'Traceback' not in proc.stderr
  assert gcs.ls('job-x/') == []
