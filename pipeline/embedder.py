"""The frozen ImageNet classifier that embeds the *greyscale* image (ARCHITECTURE.md, Preprocessing).

`build()` returns a Keras model from the L channel of the letterboxed canvas (L in [0, 100]) to the
classifier's 1000-way softmax; `pyramid()` the same classifier's convolutional trunk as a frozen feature pyramid
(the trainer's `unet` encoder), loaded from the same weights. The grey photo is rebuilt from L with the one
colour conversion, replicated to three channels, resized to the classifier's input (the embedder; the encoder
keeps the canvas size) and passed through its own `preprocess_input`. The Beam
job, the trainer and the exported serving graph all call this, so the embedding cannot drift between them.
"""
import functools
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from pipeline import cloud, colour
# The classifiers' table and describe() are TF-free, in a module of their own (pipeline/config.py uses them);
# callers keep reaching them as embedder.SPECS, embedder.describe.
from pipeline.classifiers import PRECISIONS, SPECS, describe, sha256  # noqa: F401

RANDOM_SEED = 1234  # 'random' weights are seeded so that every stage rebuilds the same embedder


class EmbedderError(RuntimeError):
  """The embedder cannot be built as asked (unknown name, weights that cannot be had)."""


@keras.saving.register_keras_serializable(package='colorizer')
class ClassifierInput(keras.layers.Layer):
  """L canvas [B, S, S, 1] in [0, 100] -> the classifier's preprocessed grey RGB input [B, N, N, 3]."""

  def __init__(self, spec_name, size=None, **kwargs):
    super().__init__(**kwargs)
    self.spec_name, self.size = spec_name, size
    self._size = size or SPECS[spec_name].input_size   # the encoder keeps the canvas size; the embedder resizes
    self._preprocess = getattr(keras.applications, SPECS[spec_name].module).preprocess_input

  def call(self, l):
    grey = colour.grey_rgb(tf.cast(l[..., 0], tf.float32))[..., None] * 255.0
    if grey.shape[1] != self._size or grey.shape[2] != self._size:
      grey = tf.image.resize(grey, [self._size, self._size], method='bilinear', antialias=True)
    return self._preprocess(tf.repeat(grey, 3, axis=-1))

  def get_config(self):
    return dict(super().get_config(), spec_name=self.spec_name, size=self.size)


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


def check_weights(info):
  """The weights file that info (describe()'s dict) names, checked against its recorded sha256."""
  weights = info['weights']
  if info.get('weights_sha256'):
    if '://' not in weights and not os.path.exists(weights):
      raise EmbedderError(f'the records were embedded with the weights file {weights}, which is not on this '
                          'machine: put it back at that path (the model embeds with it at serving time)')
    digest = sha256(local_weights(weights))   # gs:// is fetched once per process
    if digest != info['weights_sha256']:
      raise EmbedderError(f'{weights} has sha256 {digest}, but the records were embedded with a file of sha256 '
                          f'{info["weights_sha256"]}: restore the original file')
  return weights


def pyramid(name, weights, image_size):
  """Frozen encoder: L canvas [B, S, S, 1] -> the classifier trunk's features at strides 2, 4, 8, 16, 32.

  The trunk runs on the grey canvas at its own size (convolutions take any size) with the classifier's
  preprocessing. weights as build()'s: 'imagenet', a file of the *full* classifier (the one the embedder
  loads, so one file serves both), 'random' (seeded), or None: left uninitialised for a checkpoint to fill.
  Each level is resized to exactly S / stride where the trunk's padding leaves it a few pixels short.
  """
  if name not in SPECS:
    raise EmbedderError(f'unknown encoder {name!r}; choose one of {", ".join(SPECS)}')
  if image_size % 32:
    raise EmbedderError(f'the encoder needs an image size that is a multiple of 32 (five stride-2 stages), '
                        f'got {image_size}')
  spec = SPECS[name]
  app = getattr(keras.applications, spec.application)
  if weights == 'random':
    keras.utils.set_random_seed(RANDOM_SEED)
  trunk = app(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
  if weights not in (None, 'random'):
    _copy_trunk(_classifier(spec, weights), trunk)
  taps = [trunk.layers[t] if isinstance(t, int) else trunk.get_layer(t) for t in spec.pyramid]
  l = keras.Input((image_size, image_size, 1), name='l')
  features = keras.Model(trunk.input, [t.output for t in taps], name=f'{name}_trunk')(
      ClassifierInput(name, size=image_size, name='encoder_input')(l))
  levels = []
  for x, stride in zip(features, (2, 4, 8, 16, 32)):
    side = image_size // stride
    if x.shape[1] != side or x.shape[2] != side:
      x = keras.layers.Resizing(side, side, interpolation='bilinear')(x)
    levels.append(x)
  model = keras.Model(l, levels, name=f'encoder_{name}')
  model.trainable = False   # frozen, its batch normalisation in inference mode (Keras 3)
  return model


def _copy_trunk(classifier, trunk):
  """The classifier's weights into the no-top trunk, layer by layer in order (the trunk is the classifier's
  prefix; auto-generated layer names differ between two builds in one process, so names cannot pair them)."""
  source = [layer for layer in classifier.layers if layer.weights]
  target = [layer for layer in trunk.layers if layer.weights]
  for src, dst in zip(source, target):
    values = src.get_weights()
    if [v.shape for v in values] != [tuple(w.shape) for w in dst.weights]:
      raise EmbedderError(f'cannot copy {classifier.name} layer {src.name} into the encoder\'s {dst.name}: '
                          'the weights file does not fit this network')
    dst.set_weights(values)


def main(argv=None):
  """`python -m pipeline.embedder [NAME] [WEIGHTS]`: can these weights be had here? Exit 0, or 2 with the reason.

  With `imagenet` this downloads Keras' file into its cache (~/.keras/models), so later stages load it offline;
  `make demo` asks it before choosing between ImageNet weights and its offline fallback.
  """
  import sys
  args = list(sys.argv[1:] if argv is None else argv)
  name = args[0] if args else 'mobilenet_v2'
  weights = args[1] if len(args) > 1 else 'imagenet'
  try:
    if name not in SPECS:
      raise EmbedderError(f'unknown embedder {name!r}; choose one of {", ".join(SPECS)}')
    if weights != 'random':
      _classifier(SPECS[name], weights)
  except EmbedderError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  raise SystemExit(main())


def classifier(name, weights):
  """The whole ImageNet classifier `name` (1000-way softmax of an RGB photo, after its own preprocess_input):
  weights 'imagenet', 'random' or a local or gs:// weights file. serving.published's classifier test uses it."""
  if name not in SPECS:
    raise EmbedderError(f'unknown classifier {name!r}; choose one of {", ".join(SPECS)}')
  return _classifier(SPECS[name], weights)
