"""The colouring job (serving.batch) from a bucket to a bucket, against the GCS emulator (tests/gcs.py): photos,
object names that would climb out of --output or land on another's name, the images, failures.jsonl and
summary.json in the bucket, byte for byte what a local run writes.
"""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import serving_model
from gcs import gcs  # noqa: F401  (the fixture)
from serving import batch

FLAGS = ['--unit-size', '2', '--batch-size', '2', '--runner', 'DirectRunner']
GOOD = ['a.png', 'b.jpg', 'album/c.png']
# Object names GCS allows and a file system would normalise: each would write outside --output, or onto the name
# of another input's output, were it normalised.
HOSTILE = ['photos/../escaped.png', 'photos/album/../../../up.png', 'photos//a.png', 'photos/album//c.png',
           'photos/./b.png']


@pytest.fixture(scope='module')
def photos(gcs, tmp_path_factory):
  local = tmp_path_factory.mktemp('photos')
  rng = np.random.default_rng(1)
  for i, name in enumerate(GOOD):
    (local / name).parent.mkdir(exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (20 + i, 24), np.uint8)).save(local / name)
  (local / 'empty.jpg').write_bytes(b'')
  for name in HOSTILE:
    gcs.write(name, (local / 'a.png').read_bytes())
  gcs.write('/photos/rooted.png', (local / 'a.png').read_bytes())   # a leading slash: another prefix, not read
  return local, gcs.upload_dir(local, 'photos') + '/'


@pytest.mark.slow
def test_bucket_to_bucket_with_hostile_names_writes_what_a_local_run_writes(gcs, photos, tmp_path):
  local, url = photos
  summary = batch.run(['prog', '--model', serving_model.export_dir(), '--input', url, '--output',
                       gcs.url('coloured')] + FLAGS)
  assert summary['read'] == len(GOOD) + 1 + len(HOSTILE) and summary['written'] == len(GOOD)
  assert summary['failed'] == {'empty_file': 1, 'unsafe_name': len(HOSTILE)}
  names = gcs.ls('coloured/')
  assert names == sorted(['coloured/a.jpg', 'coloured/b.jpg', 'coloured/album/c.jpg', 'coloured/failures.jsonl',
                          'coloured/summary.json'])   # nothing outside the prefix, no work objects left
  assert {n.split('/')[0] for n in gcs.ls()} == {'', 'photos', 'coloured'}   # the inputs ('/photos/...') and it
  failures = {json.loads(line)['path']: json.loads(line) for line in gcs.read('coloured/failures.jsonl').splitlines()}
  for name in HOSTILE:
    assert failures[gcs.url(name)]['reason'] == 'unsafe_name', failures
  assert failures[gcs.url('photos/empty.jpg')]['reason'] == 'empty_file'
  assert json.loads(gcs.read('coloured/summary.json'))['counts']['written'] == len(GOOD)

  # The same photos from a local folder: the same images, byte for byte.
  clean = tmp_path / 'in'
  shutil.copytree(local, clean)
  batch.run(['prog', '--model', serving_model.export_dir(), '--input', str(clean), '--output',
             str(tmp_path / 'out')] + FLAGS)
  for name in GOOD:
    jpg = name.rsplit('.', 1)[0] + '.jpg'
    assert gcs.read(f'coloured/{jpg}') == (tmp_path / 'out' / jpg).read_bytes(), jpg
  assert gcs.client.bucket(gcs.bucket).get_blob('coloured/a.jpg').content_type == 'image/jpeg'
