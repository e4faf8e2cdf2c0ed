"""The exported SavedModel: same ab in a fresh process as the trainer's model, photos coloured at their own size,
TF Serving layout, saved_model_cli, the export command line and Vertex AI's AIP_MODEL_DIR, embedder checks."""
import dataclasses
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import skimage.color
import skimage.data
import tensorflow as tf
from PIL import Image

from paths import REPO
from pipeline import embedder, schema
from trainer import config, data, export, jobdir, loop, model as model_lib, runinfo, task

SIZE = 64
IMAGES = {'wide.jpg': (80, 300), 'tall.jpg': (200, 60), 'tiny.jpg': (5, 7), 'colour.png': (120, 90),
          'animated.gif': (50, 70)}

FRESH = """
import os, sys
import numpy as np
from pipeline import quiet
tf = quiet.tensorflow()
model_dir, l_file, out_dir, *image_files = sys.argv[1:]
model = tf.saved_model.load(model_dir)
raw = model.signatures['raw'](l=tf.constant(np.load(l_file)))
np.save(os.path.join(out_dir, 'ab.npy'), raw['ab'].numpy())
np.save(os.path.join(out_dir, 'embedding.npy'), raw['embedding'].numpy())
images = tf.constant([open(f, 'rb').read() for f in image_files])
for signature, ext in (('serving_default', 'jpg'), ('colorize_png', 'png')):
  for i, encoded in enumerate(model.signatures[signature](image_bytes=images)['image_bytes'].numpy()):
    open(os.path.join(out_dir, f'{i}.{ext}'), 'wb').write(encoded)
"""


def _config(records, job_dir, **kw):
  return config.Config(data=records, job_dir=str(job_dir), **dict(
      dict(epochs=1, steps_per_epoch=3, batch_size=4, width=0.25, strategy='one_device', val_images=2,
           sample_images=0), **kw))


@pytest.fixture(scope='module')
def records(make_records):
  return make_records('--image-size', str(SIZE), '--num-shards', '1', '--embedder', 'mobilenet_v2',
                      '--embedder-weights', 'random', '--runner', 'DirectRunner')


@pytest.fixture(scope='module')
def trained(records, tmp_path_factory):
  """A classification model (annealed-mean decoding inside the export), exported when training ends."""
  job = tmp_path_factory.mktemp('job')
  cfg = _config(records, job, loss='classification')
  return cfg, task.train(cfg)['export']


def _trainer_ab(cfg, l):
  """ab and embedding as the training code computes them, from the job's latest checkpoint."""
  meta = data.load_metadata(cfg.data)
  trainer = loop.Trainer(cfg, meta, tf.distribute.get_strategy(), total_steps=1)
  latest = tf.train.latest_checkpoint(jobdir.paths(cfg.job_dir).checkpoints)
  trainer.checkpoint.restore(latest).assert_existing_objects_matched()
  embedding = embedder.build('mobilenet_v2', 'random', 'float32', SIZE)(l)
  outputs = trainer.model(model_lib.features(trainer.model, {'l': l, 'embedding': embedding}))
  return model_lib.predict_ab(outputs, cfg.loss, SIZE, trainer.decoding).numpy()   # validation's decoding


def _val(records):
  meta = schema.read_metadata(records)
  raw = [r.numpy() for f in schema.list_shards(records, 'val') for r in tf.data.TFRecordDataset(f)]
  return schema.parse_batch(tf.constant(raw), meta)


def _encoded():
  photo = skimage.data.astronaut()
  out = {}
  for name, (h, w) in IMAGES.items():
    img = Image.fromarray(photo).resize((w, h))
    buf = io.BytesIO()
    if name.endswith('.jpg'):
      img.convert('L').save(buf, 'JPEG', quality=95)      # greyscale, as users bring them
    elif name.endswith('.gif'):
      img.convert('L').save(buf, 'GIF', save_all=True, append_images=[img.convert('L').rotate(90)])
    else:
      img.save(buf, 'PNG')                                   # colour: its colour is replaced
    out[name] = buf.getvalue()
  return out


def _lightness(encoded):
  rgb = np.asarray(Image.open(io.BytesIO(encoded)).convert('RGB'))
  return skimage.color.rgb2lab(rgb)[..., 0]


def test_reloaded_in_a_fresh_process_it_matches_the_trainer_and_colours_photos_at_their_size(trained, records,
                                                                                               tmp_path):
  cfg, path = trained
  assert os.path.basename(path).isdigit() and os.path.isfile(os.path.join(path, 'saved_model.pb'))
  val = _val(records)
  l = val['lab'][..., :1].numpy()
  encoded = _encoded()
  np.save(tmp_path / 'l.npy', l)
  for name, data_ in encoded.items():
    (tmp_path / name).write_bytes(data_)
  (tmp_path / 'out').mkdir()
  proc = subprocess.run([sys.executable, '-c', FRESH, path, str(tmp_path / 'l.npy'), str(tmp_path / 'out')]
                        + [str(tmp_path / name) for name in encoded],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  out_dir = tmp_path / 'out'

  np.testing.assert_allclose(np.load(out_dir / 'ab.npy'), _trainer_ab(cfg, tf.constant(l)), atol=1e-3)
  # The frozen embedder inside is the one the records were made with (stored as float16).
  np.testing.assert_allclose(np.load(out_dir / 'embedding.npy'), val['embedding'], rtol=2e-3, atol=1e-6)

  for i, name in enumerate(encoded):
    jpeg, png = (out_dir / f'{i}.jpg').read_bytes(), (out_dir / f'{i}.png').read_bytes()
    source = Image.open(io.BytesIO(encoded[name]))
    for encoded_out, fmt in ((jpeg, 'JPEG'), (png, 'PNG')):
      image = Image.open(io.BytesIO(encoded_out))
      assert image.format == fmt and image.mode == 'RGB' and image.size == source.size, name
    # The output keeps the input's own full-resolution lightness: only ab is predicted. Exactly (to 8-bit
    # rounding) where the colour is inside the sRGB gamut; clipping the others moves their L a little.
    want = _lightness(encoded[name])
    rgb = np.asarray(Image.open(io.BytesIO(png)))
    in_gamut = ((rgb > 0) & (rgb < 255)).all(axis=-1)
    assert in_gamut.mean() > 0.5 and np.abs(_lightness(png) - want)[in_gamut].max() < 1.0, name
    assert np.abs(_lightness(png) - want).mean() < 0.5, name
    assert np.abs(_lightness(jpeg) - want).mean() < 1.5, name


def test_saved_model_cli_lists_the_signatures(trained):
  _, path = trained
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  out = subprocess.run([cli, 'show', '--dir', path, '--all'], capture_output=True, text=True, timeout=120).stdout
  for text in ("signature_def['serving_default']", "signature_def['colorize_png']", "signature_def['raw']",
               "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)",
               f"inputs['l'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, {SIZE}, {SIZE}, 1)",
               f"outputs['ab'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, {SIZE}, {SIZE}, 2)"):
    assert text in out, text


# colorizer.json's keys before it was derived from run.json's record (the serving front ends and benchmarks read them).
INFO_KEYS = {'image_size', 'embedder', 'encoder', 'output_stride', 'model', 'loss', 'width', 'ab_histogram', 'hints',
             'step', 'checkpoint', 'ab_bins', 'annealed_mean_temperature'}


def test_colorizer_json_describes_the_model(trained, records):
  cfg, path = trained
  info = json.loads(open(os.path.join(path, jobdir.INFO_FILE)).read())
  meta = schema.read_metadata(records)
  assert INFO_KEYS <= set(info) and (info['width'], info['hints']) == (0.25, True)
  assert info['image_size'] == SIZE and info['embedder'] == meta['embedder']
  assert info['ab_histogram'] == meta['ab_histogram']
  assert (info['model'], info['loss'], info['step']) == ('unet', 'classification', 3)   # the defaults
  # Its encoder: the records' embedder with the same weights (random here), at stride 4.
  assert info['encoder'] == {'name': 'mobilenet_v2', 'weights': 'random'} and info['output_stride'] == 4
  assert info['annealed_mean_temperature'] == 0.38 and info['ab_bins'] == 261


def test_export_command_honours_aip_model_dir(records, tmp_path):
  cfg = _config(records, tmp_path / 'job', model='beta', loss='mse', steps_per_epoch=1, export=False)
  task.train(cfg)
  target = tmp_path / 'vertex' / 'model'
  proc = subprocess.run([sys.executable, '-m', 'trainer.export', '--job-dir', cfg.job_dir], cwd=REPO, text=True,
                        capture_output=True, timeout=300, env=dict(os.environ, AIP_MODEL_DIR=str(target)))
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == f'Exported {target}'
  assert 'Traceback' not in proc.stderr and 'INFO' not in proc.stderr.replace('export.py', '')
  # Vertex AI wants the SavedModel itself in AIP_MODEL_DIR, not in a numbered sub-directory.
  assert (target / 'saved_model.pb').is_file() and not (tmp_path / 'job' / 'export').exists()
  loaded = tf.saved_model.load(str(target))
  l = _val(records)['lab'][..., :1]
  np.testing.assert_allclose(loaded.signatures['raw'](l=l)['ab'], _trainer_ab(cfg, l), atol=1e-3)
  info = json.loads((target / jobdir.INFO_FILE).read_text())
  assert (info['model'], info['loss'], info['step'], info['annealed_mean_temperature']) == ('beta', 'mse', 1, None)
  assert info['encoder'] is None and info['output_stride'] is None   # no encoder: no output stride


@pytest.mark.parametrize('model', ['unet', 'beta'])
def test_a_job_dir_with_a_flat_run_json_of_before_still_exports_and_resumes(records, tmp_path, model):
  """run.json as trainer.task wrote it before it recorded the config whole: flat keys, None for 'not applicable'."""
  cfg = _config(records, tmp_path / 'job', model=model, steps_per_epoch=1, export=False, val_images=0)
  task.train(cfg)
  p = jobdir.paths(cfg.job_dir)
  meta = schema.read_metadata(records)
  encoder = {'name': 'mobilenet_v2', 'weights': 'random'} if model == 'unet' else None
  old = {'global_batch': 4, 'replicas': 1, 'model': model, 'loss': 'classification', 'width': 0.25,
         'image_size': SIZE, 'embedder': meta['embedder'], 'encoder': encoder,
         'output_stride': 4 if model == 'unet' else None, 'ab_histogram': meta['ab_histogram'], 'data': records,
         'precision': 'float32', 'batch_size': 4, 'learning_rate': 0.001, 'schedule': 'cosine', 'zoom': 0.5,
         'rebalance_mix': 0.5, 'temperature': 0.38, 'hints': True, 'seed': 0, 'fine_tune_from': None,
         'encoder_lr_scale': None}
  with open(p.run_file, 'w') as f:
    json.dump(old, f)
  info = json.loads(open(os.path.join(export.export(cfg.job_dir), jobdir.INFO_FILE)).read())
  assert {key: info[key] for key in INFO_KEYS} == dict(
      {key: old[key] for key in INFO_KEYS & set(old)}, step=1, ab_bins=261, annealed_mean_temperature=0.38,
      checkpoint=tf.train.latest_checkpoint(p.checkpoints))
  # The same flags resume it (another model would be refused), and run.json is then written in today's layout.
  assert task.train(dataclasses.replace(cfg, epochs=2))['step'] == 2
  assert runinfo.read(p)['config'] == dataclasses.asdict(dataclasses.replace(cfg, epochs=2, fine_tune_from=0))
  with pytest.raises(jobdir.RunError, match=r'\(model: '):
    task.train(dataclasses.replace(cfg, model='fusion' if model == 'beta' else 'beta', epochs=3))


def test_help_lists_every_flag():
  out = subprocess.run([sys.executable, '-m', 'trainer.export', '--help'], cwd=REPO, capture_output=True, text=True,
                       timeout=120).stdout
  assert set(re.findall(r'^  --([\w-]+):', out, re.M)) == {'job-dir', 'checkpoint', 'temperature', 'strength'}, out


def test_export_refuses_embedder_weights_that_changed(tmp_path):
  weights = tmp_path / 'weights.h5'
  weights.write_bytes(b'not the file the records were embedded with')
  info = dict(embedder.describe('mobilenet_v2', str(weights), 'float32'), weights_sha256='0' * 64)
  with pytest.raises(export.ExportError, match=f'{weights} has sha256 .* restore the original file'):
    export.load_embedder(info, SIZE)
  with pytest.raises(export.ExportError, match='which is not on this machine'):
    export.load_embedder(dict(info, weights=str(tmp_path / 'gone.h5')), SIZE)


def test_export_without_a_checkpoint_says_what_to_do(tmp_path):
  with pytest.raises(jobdir.RunError, match='train first with python -m trainer.task'):
    export.export(str(tmp_path / 'empty-job'))


def test_export_embeds_with_the_real_weights_file_it_verifies(mobilenet_weights):
  info = embedder.describe('mobilenet_v2', str(mobilenet_weights), 'float32')
  model = export.load_embedder(info, SIZE)     # sha256 checked against the file
  probs = model(tf.fill([1, SIZE, SIZE, 1], 50.0)).numpy()
  assert probs.shape == (1, 1000) and probs.sum() == pytest.approx(1.0, abs=1e-3)
