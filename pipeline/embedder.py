"""The frozen ImageNet classifier that embeds the *greyscale* image (DESIGN.md, Preprocessing).

`build()` returns a Keras model from the L channel of the letterboxed canvas (L in [0, 100]) to the
classifier's 1000-way softmax. The grey photo is rebuilt from L with the one colour conversion, replicated to
three channels, resized to the classifier's input and passed through its own `preprocess_input`. The Beam
job, the trainer and the exported serving graph all call this, so the embedding cannot drift between them.
"""
import dataclasses
import functools
import hashlib
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from pipeline import cloud, colour

RANDOM_SEED = 1234  # 'random' weights are seeded so that every stage rebuilds the same embedder


@dataclasses.dataclass(frozen=True)
class Spec:
  application: str
  module: str
  input_size: int
  dim: int = 1000


SPECS = {
    'inception_resnet_v2': Spec('InceptionResNetV2', 'inception_resnet_v2', 299),
    'mobilenet_v2': Spec('MobileNetV2', 'mobilenet_v2', 224),
}
PRECISIONS = {'float32': 'float32', 'bfloat16': 'mixed_bfloat16'}


class EmbedderError(RuntimeError):
  """The embedder cannot be built as asked (unknown name, weights that cannot be had)."""


@keras.saving.register_keras_serializable(package='colorizer')
class ClassifierInput(keras.layers.Layer):
  """L canvas [B, S, S, 1] in [0, 100] -> the classifier's preprocessed grey RGB input [B, N, N, 3]."""

  def __init__(self, spec_name, **kwargs):
    super().__init__(**kwargs)
    self.spec_name = spec_name
    spec = SPECS[spec_name]
    self._size = spec.input_size
    self._preprocess = getattr(keras.applications, spec.module).preprocess_input

  def call(self, l):
    grey = colour.grey_rgb(tf.cast(l[..., 0], tf.float32))[..., None] * 255.0
    grey = tf.image.resize(grey, [self._size, self._size], method='bilinear', antialias=True)
    return self._preprocess(tf.repeat(grey, 3, axis=-1))

  def get_config(self):
    return dict(super().get_config(), spec_name=self.spec_name)


@functools.lru_cache(maxsize=None)
def local_weights(path):
  """A local copy of a weights file: gs:// is copied (with gcsfs) once per process into a temp dir."""
  if '://' not in path:
    if not os.path.exists(path):
      raise EmbedderError(f'embedder weights file {path} does not exist; pass --embedder-weights '
                          'imagenet, random, or the path of a Keras .weights.h5/.h5 file')
    return path
  import fsspec
  local = os.path.join(tempfile.mkdtemp(prefix='embedder-'), os.path.basename(path))
  try:
    with fsspec.open(path, 'rb') as src, open(local, 'wb') as dst:
      shutil.copyfileobj(src, dst, 1 << 24)
  except Exception as e:
    missing = (f'embedder weights file {path} does not exist; pass --embedder-weights imagenet, random, or the '
               'path of a Keras .weights.h5/.h5 file')
    message = cloud.explain(path, e, missing=missing)
    raise EmbedderError(message if message is missing else f'--embedder-weights {message}') from None
  return local


def sha256(path):
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def _classifier(spec, weights):
  app = getattr(keras.applications, spec.application)
  if weights == 'random':
    keras.utils.set_random_seed(RANDOM_SEED)
    return app(weights=None)
  if weights == 'imagenet':
    try:
      return app(weights='imagenet')
    except Exception as e:  # Keras raises a bare Exception ("URL fetch failure") when offline
      raise EmbedderError(
          f'cannot download the ImageNet weights of {spec.application} ({e}). This machine may be offline: '
          'pass --embedder-weights PATH with a local or gs:// Keras weights file, or place the file Keras '
          'downloads in ~/.keras/models/. Nothing falls back to other weights.') from e
  try:
    return app(weights=local_weights(weights))
  except EmbedderError:
    raise
  except Exception as e:
    raise EmbedderError(f'cannot load {weights} into {spec.application} (include_top=True, 1000 classes): '
                        f'{e}') from e


def build(name, weights, precision='float32', image_size=256):
  """Frozen embedder: L canvas [B, image_size, image_size, 1] float32 -> [B, dim] float32."""
  if name not in SPECS:
    raise EmbedderError(f'unknown embedder {name!r}; choose one of {", ".join(SPECS)}')
  if precision not in PRECISIONS:
    raise EmbedderError(f'unknown precision {precision!r}; choose one of {", ".join(PRECISIONS)}')
  spec = SPECS[name]
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(PRECISIONS[precision])
  try:
    classifier = _classifier(spec, weights)
    l = keras.Input((image_size, image_size, 1), name='l')
    out = keras.layers.Activation('linear', dtype='float32', name='embedding')(
        classifier(ClassifierInput(name, name='classifier_input')(l)))
  finally:
    keras.config.set_dtype_policy(previous)
  model = keras.Model(l, out, name=f'embedder_{name}')
  model.trainable = False
  return model


def describe(name, weights, precision):
  """What metadata.json records of the embedder, so later stages rebuild (or refuse) the same one."""
  spec = SPECS[name]
  info = {'name': name, 'weights': weights, 'precision': precision, 'dim': spec.dim,
          'dtype': 'float16', 'input_size': spec.input_size}
  if weights not in ('random', 'imagenet') and '://' not in weights:
    info['weights_sha256'] = sha256(weights)
  return info
