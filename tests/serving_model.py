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
