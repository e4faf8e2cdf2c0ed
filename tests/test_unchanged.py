"""Users see the same bytes across refactors: records and an export's outputs pinned by their digests.

The digests were taken from the code before the trainer, serving and pipeline were reorganised; a change of the
code's shape must leave them alone. A change that means to change the bytes (a new schema version, another
colour conversion) updates them in the same commit and says why: run this file with UNCHANGED_PRINT=1 to see
the new ones.

- records: the Beam job on scikit-image's sample photos (random, seeded MobileNetV2 embedder); every field of
  every record but the key's folder (the sample photos' path depends on the machine).
- exports: a unet (classification, hints) and a fusion (mse) job directory whose checkpoint holds deterministic
  weights (written here, after one real training step wrote run.json), exported by trainer.export, then every
  signature on two photos in one batch.
"""
import hashlib
import io
import os

import numpy as np
import pytest
import skimage.data
import tensorflow as tf
from PIL import Image

from pipeline import schema
from trainer import config, export, jobdir, task

RECORDS = '6079397101a642acef9ba2527a2c5452f86abea775eac9883d6f67dfa3ed6104'
EXPORTS = {
    'unet-classification': {
        'colorize_hints_png': '4de1beb7604c94795500db3e3ee3f1206284dd3e79741eecfb203998a61d59d8',
        'colorize_png': 'b2126f8e894546412d0ce85c5adc9d22acd22250209465e54928051c0e16b58d',
        'raw': 'dbf7482f76b4c01c0cc0b02a0bcee01d8991aabde80caedad37f87264bb3f69c',
        'serving_default': '75ae0c5cf9ddb9355a442ea7b2b165e969edc8e65ec40c9e90dae9d8395985b7',
        'suggest_colours': '1b394db8d108b13dfc0b84d4e73738fd4adc90bcee6226f6d67ce36739cdda47',
    },
    'fusion-mse': {
        'colorize_hints_png': 'edfb8bad390dad6af3cf991489101ba1dbda25da86ce1de325ea52483351cad5',
        'colorize_png': '36b657cb1768d9c7e557dbf6c071236931dbe8346fdf868a578ebb34835bed70',
        'raw': '544c7da9b86eaa356ca017532f2bf6830fcab3bdcbb533057373a2a077d2296a',
        'serving_default': 'c3d8b10b625d6e3c28bd1652ea5e8997784387409d69d74c9ccc6e0ec10d156d',
    },
}
SIZE = 64


def _digest(*parts):
  h = hashlib.sha256()
  for p in parts:
    h.update(p if isinstance(p, bytes) else np.ascontiguousarray(p).tobytes())
  return h.hexdigest()


def _check(name, got, want):
  if os.environ.get('UNCHANGED_PRINT'):
    print(f'\n{name}: {got!r}')
    return
  assert got == want, f'{name}: the bytes changed ({got} != {want})'


@pytest.fixture(scope='module')
def records(make_records):
  return make_records('--image-size', str(SIZE), '--num-shards', '1', '--val-fraction', '0.3', '--embedder',
                      'mobilenet_v2', '--embedder-weights', 'random', '--runner', 'DirectRunner')


def test_records_are_unchanged(records):
  h = hashlib.sha256()
  for split in schema.SPLITS:
    for path in schema.list_shards(records, split):
      h.update(os.path.basename(path).encode())
      for raw in tf.data.TFRecordDataset(path):
        example = tf.train.Example.FromString(raw.numpy())
        f = example.features.feature
        h.update(os.path.basename(f['key'].bytes_list.value[0]))
        f['key'].bytes_list.value[0] = b''
        h.update(example.SerializeToString(deterministic=True))
  meta = schema.read_metadata(records)
  h.update(repr((meta['counts'], meta['ab_histogram'], meta['embedder'], meta['image_size'],
                 meta['record'])).encode())
  _check('records', h.hexdigest(), RECORDS)


def _photos():
  out = []
  for rgb in (skimage.data.chelsea()[:150, :200], skimage.data.camera()[::3, ::2]):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, 'PNG')
    out.append(buf.getvalue())
  return out


def _deterministic_checkpoint(job_dir):
  """Replace the job's latest checkpoint by one whose every variable is a fixed function of its index."""
  p = jobdir.paths(job_dir)
  run = jobdir.read_run(p)
  model = export.load_colorizer(run, tf.train.latest_checkpoint(p.checkpoints))
  for i, v in enumerate(model.variables):
    rng = np.random.default_rng(i)
    values = rng.normal(0.0, 0.05, v.shape.as_list())
    if 'variance' in v.path:
      values = 1.0 + np.abs(values)
    v.assign(values.astype('float32'))
  tf.train.Checkpoint(step=tf.Variable(7, dtype=tf.int64), model=model).save(os.path.join(p.checkpoints, 'ckpt'))


@pytest.mark.parametrize('name', sorted(EXPORTS))
def test_export_outputs_are_unchanged(records, tmp_path, name):
  model, loss = name.split('-')
  job = tmp_path / 'job'
  task.train(config.Config(data=records, job_dir=str(job), model=model, loss=loss, epochs=1, steps_per_epoch=1,
                           batch_size=2, width=0.25, strategy='one_device', val_images=0, sample_images=0,
                           export=False))
  _deterministic_checkpoint(str(job))
  loaded = tf.saved_model.load(export.export(str(job)))
  images = tf.constant(_photos())
  got = {}
  for signature in ('serving_default', 'colorize_png'):
    got[signature] = _digest(*loaded.signatures[signature](image_bytes=images)['image_bytes'].numpy())
  l = tf.constant(np.linspace(0.0, 100.0, 2 * SIZE * SIZE, dtype=np.float32).reshape(2, SIZE, SIZE, 1))
  raw = loaded.signatures['raw'](l=l)
  got['raw'] = _digest(raw['ab'].numpy(), raw['embedding'].numpy())
  if 'colorize_hints' in loaded.signatures:
    hints = dict(points=tf.constant([[[0.2, 0.3], [0.7, 0.6]], [[0.5, 0.5], [-1.0, -1.0]]]),
                 colours=tf.constant([[[40.0, 90.0, 200.0], [200.0, 120.0, 30.0]], [[30.0, 160.0, 60.0],
                                                                                  [0.0, 0.0, 0.0]]]),
                 radius=tf.constant([[0.05, 0.0], [0.1, 0.0]]))
    got['colorize_hints_png'] = _digest(*loaded.signatures['colorize_hints_png'](
        image_bytes=images, **hints)['image_bytes'].numpy())
  if 'suggest_colours' in loaded.signatures:
    out = loaded.signatures['suggest_colours'](image_bytes=images, **hints,
                                               at=tf.constant([[[0.1, 0.1]], [[0.9, 0.2]]]))
    got['suggest_colours'] = _digest(out['colours'].numpy())
  for signature, digest in sorted(got.items()):
    _check(f'{name} {signature}', digest, EXPORTS[name].get(signature))
