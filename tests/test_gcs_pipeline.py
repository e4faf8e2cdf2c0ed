"""The preprocessing stage on gs:// paths, against a real GCS emulator on loopback (tests/gcs.py).

Photos in a bucket -> the Beam job (in process, and the CLI with multi-processing workers) -> shards,
metadata.json and failures.jsonl in the bucket, read back by the TF-free reader (pipeline.inspect), by gcsfs
(schema.read_metadata) and by TensorFlow's own gs:// filesystem (schema.list_shards + tf.data, as the trainer
reads them). Then the errors a user meets on gs://: no bucket, no permission, no such path, no credentials.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from gcs import FORBIDDEN_BUCKET, gcs, no_credentials_env  # noqa: F401  (gcs is the fixture)
from paths import MOBILENET_WEIGHTS, REPO
from pipeline import cli, config, preprocess, schema, sources

RANDOM = ['--embedder', 'mobilenet_v2', '--embedder-weights', 'random', '--runner', 'DirectRunner']
PHOTOS = sources.sample_photos()[:4]


@pytest.fixture(scope='module')
def photos(gcs, tmp_path_factory):
  """Four photos, an empty file and a text file under gs://BUCKET/photos/."""
  local = tmp_path_factory.mktemp('photos')
  for path in PHOTOS:
    shutil.copy(path, local)
  (local / 'album').mkdir()
  (local / 'album' / 'broken.jpg').write_bytes(b'')
  (local / 'notes.txt').write_text('not an image name: skipped when a folder is read')
  return gcs.upload_dir(local, 'photos') + '/'


@pytest.fixture(scope='module')
def job(gcs, photos):
  """One in-process run from the bucket to the bucket; its summary."""
  return preprocess.run(['prog', '--input', photos, '--output', gcs.url('records'), '--num-shards', '2',
                         '--val-fraction', '0.3'] + RANDOM)


def test_records_metadata_and_failures_land_in_the_bucket(gcs, job):
  assert job['read'] == len(PHOTOS) + 1 and sum(job['written'].values()) == len(PHOTOS)
  assert job['failed'] == {'empty_file': 1}
  names = gcs.ls('records/')
  assert names == sorted(['records/metadata.json', 'records/failures.jsonl', 'records/train-00000-of-00002.tfrecord',
                          'records/train-00001-of-00002.tfrecord', 'records/val-00000-of-00001.tfrecord'])
  meta = schema.read_metadata(gcs.url('records'))  # gcsfs
  assert meta['counts'] == job['written'] and meta['inputs'] == [gcs.url('photos') + '/']
  assert meta['failures'] == {'count': 1, 'by_reason': {'empty_file': 1}, 'report': 'failures.jsonl'}
  (failure,) = [json.loads(line) for line in gcs.read('records/failures.jsonl').decode().splitlines()]
  assert failure['path'] == gcs.url('photos/album/broken.jpg') and failure['reason'] == 'empty_file'


def test_tensorflow_reads_the_records_from_the_bucket(gcs, job):
  # TensorFlow's own gs:// filesystem (libcurl, through the fixture's TLS front), as the trainer reads records.
  meta = schema.read_metadata(gcs.url('records'))
  keys = []
  for split in schema.SPLITS:
    files = schema.list_shards(gcs.url('records'), split)
    assert all(f.startswith(gcs.url('records/')) for f in files)
    for batch in tf.data.TFRecordDataset(files).batch(8):
      parsed = schema.parse_batch(batch, meta)
      assert parsed['lab'].shape[1:] == (256, 256, 3) and parsed['embedding'].shape[1:] == (1000,)
      keys += [k.decode() for k in parsed['key'].numpy()]
  assert sorted(keys) == sorted(gcs.url('photos', os.path.basename(p)) for p in PHOTOS)
  with pytest.raises(schema.SchemaError, match='no train shards'):
    schema.list_shards(gcs.url('nothing-here'), 'train')


def _weights(gcs, tmp_path):
  """A Keras weights file of the full MobileNetV2 in the bucket: the shared ImageNet file when there is one,
  else seeded random weights saved here (shared files are uploaded, never copied into the repo)."""
  local = MOBILENET_WEIGHTS
  if not local.is_file():
    import keras
    keras.utils.set_random_seed(1)
    local = tmp_path / 'mobilenet_v2.weights.h5'
    keras.applications.MobileNetV2(weights=None).save_weights(local)
  return gcs.upload_file(local, 'weights/mobilenet_v2.weights.h5'), hashlib.sha256(local.read_bytes()).hexdigest()


def test_cli_with_weights_in_the_bucket_then_inspect(gcs, photos, tmp_path):
  weights, sha = _weights(gcs, tmp_path)
  env = gcs.env(PYTHONPATH=str(REPO))
  # Worker processes (as on Dataflow) reach the bucket and fetch the weights themselves.
  proc = subprocess.run([sys.executable, '-m', 'pipeline.preprocess', '--input', photos, '--output',
                         gcs.url('records-cli'), '--embedder', 'mobilenet_v2', '--embedder-weights', weights,
                         '--num-shards', '1', '--runner', 'DirectRunner', '--direct_num_workers', '2',
                         '--direct_running_mode', 'multi_processing'],
                        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'Preprocessing finished: {gcs.url("records-cli")}' in proc.stdout and 'written  4' in proc.stdout
  assert proc.stderr.strip() == '', proc.stderr[-3000:]
  embedder = json.loads(gcs.read('records-cli/metadata.json'))['embedder']
  assert embedder['weights'] == weights and embedder['weights_sha256'] == sha

  proc = subprocess.run([sys.executable, '-m', 'pipeline.inspect', gcs.url('records-cli'), '--limit', '1'],
                        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'train: ' in proc.stdout and gcs.url('photos/') in proc.stdout and 'embedding 1000-d' in proc.stdout

  proc = subprocess.run([sys.executable, '-m', 'pipeline.inspect', gcs.url('no-records')],
                        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
  assert proc.returncode == 2 and f'{gcs.url("no-records/metadata.json")} not found' in proc.stderr


# Each: the flags, then what the one-line error must say (the path and the fix).
ERRORS = {
    'input bucket missing': (['--input', 'gs://no-such-bucket/photos/'],
                             ['--input gs://no-such-bucket/photos/', 'bucket gs://no-such-bucket does not exist',
                              'gcloud storage buckets create gs://no-such-bucket']),
    'input path missing': (['--input', 'gs://colorizer-test/no-such-folder/'],
                           ['--input gs://colorizer-test/no-such-folder/: nothing matches',
                            'gcloud storage ls gs://colorizer-test/no-such-folder/']),
    'input permission denied': (['--input', f'gs://{FORBIDDEN_BUCKET}/photos/'],
                                [f'--input gs://{FORBIDDEN_BUCKET}/photos/: permission denied',
                                 'storage.objects.list', 'roles/storage.objectViewer',
                                 f'add-iam-policy-binding gs://{FORBIDDEN_BUCKET}']),
    'output bucket missing': (['--output', 'gs://no-such-bucket/records'],
                              ['--output gs://no-such-bucket/records: bucket gs://no-such-bucket does not exist']),
    'output permission denied': (['--output', f'gs://{FORBIDDEN_BUCKET}/records'],
                                 [f'--output gs://{FORBIDDEN_BUCKET}/records: permission denied',
                                  'roles/storage.objectAdmin']),
    'weights missing': (['--embedder-weights', 'gs://colorizer-test/weights/missing.weights.h5'],
                        ['embedder weights file gs://colorizer-test/weights/missing.weights.h5 does not exist',
                         '--embedder-weights imagenet, random, or the path']),
    'weights permission denied': (['--embedder-weights', f'gs://{FORBIDDEN_BUCKET}/w.weights.h5'],
                                  [f'--embedder-weights gs://{FORBIDDEN_BUCKET}/w.weights.h5: permission denied',
                                   'roles/storage.objectViewer']),
}


@pytest.mark.parametrize('case', list(ERRORS))
def test_cloud_errors_name_the_path_and_the_fix(gcs, photos, case, capsys):
  flags, expected = ERRORS[case]
  args = {'--input': photos, '--output': gcs.url('records-error'), '--embedder-weights': 'random'}
  args.update(zip(flags[::2], flags[1::2]))
  # The CLI's main with what cli.run gives it, in this process: one subprocess per case would cost ~10 s of imports.
  argv = (['pipeline.preprocess', '--embedder', 'mobilenet_v2', '--runner', 'DirectRunner']
          + [v for kv in args.items() for v in kv])
  assert preprocess.main(*cli.parse(config.Config, argv, known_only=True)) == 2
  out, err = capsys.readouterr()
  assert err.startswith('error: ') and err.count('\n') == 1 and 'Traceback' not in err, err
  for text in expected:
    assert text in err, (text, err)
  assert out == '' and gcs.ls('records-error') == []


def test_missing_credentials_fail_before_any_request(gcs, photos, tmp_path):
  # No STORAGE_EMULATOR_HOST (emulators need no credentials), no credentials file, no metadata server: the CLI
  # stops before Beam would retry the lookup for ~25 s and fail later with a 401.
  env = gcs.env(PYTHONPATH=str(REPO), STORAGE_EMULATOR_HOST=None, **no_credentials_env(tmp_path / 'gcloud'))
  proc = subprocess.run([sys.executable, '-m', 'pipeline.preprocess', '--input', photos, '--output',
                         gcs.url('records-nocreds')] + RANDOM, capture_output=True, text=True, env=env, cwd=tmp_path,
                        timeout=120)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert proc.stderr.startswith(f'error: {photos}: no Google Cloud credentials found'), proc.stderr
  assert 'gcloud auth application-default login' in proc.stderr and 'GOOGLE_APPLICATION_CREDENTIALS' in proc.stderr
  assert proc.stderr.count('\n') == 1 and 'Traceback' not in proc.stderr
  assert gcs.ls('records-nocreds') == []
