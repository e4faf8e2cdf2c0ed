"""One real exported colorizer for the serving tests, built once per test process.

Real records (the Beam job on scikit-image's photos, random MobileNetV2 embedder), two training steps and the
real export: the serving tests exercise the graph users get, only with untrained weights.
"""
import atexit
import functools
import io
import os
import pathlib
import shutil
import tempfile

import numpy as np
import skimage.data
from PIL import Image

import made_records
from serving import exported


def build_export(root, embedder='mobilenet_v2', width=0.25, photos=6, hints=True):
  """Export base directory (under root) of a colorizer trained for two steps on the Beam job's records of the
  first sample photos (random embedder weights; made_records makes them once per test process), with hint points
  (its export has every signature)."""
  from trainer import config, task
  records = made_records.shared()
  data = records('--input', records.photos(photos), '--embedder', embedder, '--embedder-weights', 'random',
                 '--runner', 'DirectRunner', '--num-shards', '1', '--val-fraction', '0.3')
  result = task.train(config.Config(data=data, job_dir=str(pathlib.Path(root) / 'job'), epochs=1,
                                    steps_per_epoch=2, batch_size=2, width=width, val_images=2, sample_images=0,
                                    hints=hints))
  return os.path.dirname(result['export'])


def save_pattern(path, size=64, ab=40.0, hints=False):
  """Export (to `path`, the version directory) the real export graph around a 'network' that paints a known
  pattern: a = +ab on the canvas's left half, -ab on its right; b = +ab on the top half, -ab on the bottom.
  hints=True: it takes hints and paints each hint's own colour where the hint map has one (its mask)."""
  import tensorflow as tf
  from trainer import export, model as model_lib

  class PatternModule(export.ColorizerModule):
    def _forward_fn(self, l, hint_map):
      n, s = tf.shape(l)[0], self._size
      half = tf.range(s) < s // 2
      a = tf.where(half[None, :], ab, -ab) * tf.ones([n, s, 1])      # by column
      b = tf.where(half[:, None], ab, -ab) * tf.ones([n, 1, s])      # by row
      pattern = tf.stack([a, b], axis=-1)
      if hints:
        pattern = tf.where(hint_map[..., 2:] > 0, hint_map[..., :2] * model_lib.AB_SCALE, pattern)
      return pattern / model_lib.AB_SCALE, tf.zeros([n, 1])          # as an mse model's outputs

  export.save(PatternModule(None, None, 'mse', size, takes_hints=hints),
              {'image_size': size, 'model': 'pattern', 'loss': 'mse', 'embedder': {'name': 'none'}, 'hints': hints},
              path)


def save_distribution(path, size=64, hints=False, strength=True):
  """Export (to `path`, the version directory) the real export graph around a classification 'network' whose colour
  distribution is known everywhere: 50 % a vivid blue, 30 % grey, 20 % a yellow, trained with rebalancing that
  favoured the vivid ones. Without that (strength 0) the mean is a dull blue; near its mode (strength 1) the vivid
  one; its default strength (colorizer.json) is 0.5. hints=True: it takes hints, and where a hint is (its mask) the
  distribution is all near the hint's own colour, at every strength. strength=False: exported as before the
  colour-strength control existed (no *_strength signatures, no colour_strength in colorizer.json)."""
  import tensorflow as tf
  from trainer import abbins, export, model as model_lib

  centres = abbins.centres()
  probs = np.full(len(centres), 1e-6)
  for ab, p in (((10.0, -60.0), 0.5), ((0.0, 0.0), 0.3), ((0.0, 60.0), 0.2)):
    probs[np.argmin(((centres - ab) ** 2).sum(-1))] = p
  logits = tf.constant(np.log(probs / probs.sum()), tf.float32)
  log_w = np.zeros(len(centres))   # as if trained with rebalancing that favoured the vivid colours over grey
  for ab, w in (((10.0, -60.0), 0.7), ((0.0, 0.0), -1.0), ((0.0, 60.0), 0.7)):
    log_w[np.argmin(((centres - ab) ** 2).sum(-1))] = w
  grid = tf.constant(centres, tf.float32)

  class Distribution(export.ColorizerModule):
    def _forward_fn(self, l, hint_map):
      n, g = tf.shape(l)[0], self._size // 4
      out = tf.broadcast_to(logits, [n, g, g, len(centres)])
      if hints:   # the hint map on the logits' grid: where a hint covers a cell, a sharp peak at its colour
        pooled = tf.nn.avg_pool2d(hint_map, 4, 4, 'VALID')
        mask = pooled[..., 2:]
        ab = pooled[..., :2] * model_lib.AB_SCALE / tf.maximum(mask, 1e-6)
        peak = -tf.reduce_sum((ab[..., None, :] - grid) ** 2, -1) / 50.0
        out = tf.where(mask > 0, peak, out)
      return out, tf.zeros([n, 1])

    def signatures(self):
      made = super().signatures()
      return made if strength else {k: v for k, v in made.items() if 'strength' not in k}

  export.save(Distribution(None, None, 'classification', size, abbins.Decoding(0.38, 0.5, tuple(log_w)),
                           takes_hints=hints),
              {'image_size': size, 'model': 'distribution', 'loss': 'classification', 'hints': hints,
               'embedder': {'name': 'none'}, 'annealed_mean_temperature': 0.38,
               **({'colour_strength': 0.5} if strength else {})}, path)


@functools.cache
def export_dir():
  """The tests' model, built once per test process (a small width keeps it quick)."""
  root = tempfile.mkdtemp(prefix='serving-model-')
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  return build_export(root)


@functools.cache
def colorizer():
  return exported.Colorizer(export_dir())


def jpeg(rgb_or_grey, quality=90):
  buf = io.BytesIO()
  Image.fromarray(np.asarray(rgb_or_grey)).save(buf, 'JPEG', quality=quality)
  return buf.getvalue()


def png(array):
  buf = io.BytesIO()
  Image.fromarray(np.asarray(array)).save(buf, 'PNG')
  return buf.getvalue()


def grey_photo(height=None, width=None):
  """A black-and-white photo (uint8 [H, W]): scikit-image's camera, cropped or tiled to the size asked."""
  cam = skimage.data.camera()
  if height is None:
    return cam
  reps = (-(-height // cam.shape[0]), -(-width // cam.shape[1]))
  return np.tile(cam, reps)[:height, :width]


def decoded(data):
  return np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))


def chroma(rgb):
  """Mean (max - min) over R, G, B: 0 for greys."""
  rgb = np.asarray(rgb, np.int16)
  return float((rgb.max(-1) - rgb.min(-1)).mean())
