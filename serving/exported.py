"""The one loader of an exported model, for every front end: load the SavedModel once and call its signatures.

The export (trainer/export.py) is a TF Serving model base: EXPORT_DIR/<version>/saved_model.pb with
  serving_default  image_bytes tf.string [N] (any size, any common format) -> image_bytes: JPEG, same size
  colorize_png     the same with PNG output
  raw              l float32 [N, S, S, 1] (L canvas) -> ab [N, S, S, 2], embedding
(+ colorize_hints, colorize_hints_png and suggest_colours when the model has them, and for classification models
exported since the colour-strength control exists colorize_strength(_png) and colorize_hints_strength(_png): the
same with a strength [N], 0 palest to 1 most vivid; see trainer/export.py) and assets.extra/colorizer.json
describing the model (its default strength: colour_strength). All image work (decode, letterbox, embed, predict,
un-letterbox, upsample, join with the full-resolution L, encode) happens inside the graph, so the CLI, the web
page, the REST API, evaluation and TF Serving itself all produce the same bytes.

A model call that fails raises (or, per image, returns) a kind of serving/errors.py, decided in one place
(`failure`): out of memory is the server's state, a tensor the graph refuses is the input's fault.
"""
import json
import posixpath

import numpy as np
import tensorflow as tf

from serving import errors, user_hints
from trainer import jobdir

SIGNATURES = ('serving_default', 'colorize_png', 'raw')
OPTIONAL_SIGNATURES = ('colorize_hints', 'colorize_hints_png', 'suggest_colours')   # --hints, classification
FORMATS = {'jpeg': 'serving_default', 'png': 'colorize_png'}
HINT_FORMATS = {'jpeg': 'colorize_hints', 'png': 'colorize_hints_png'}
STRENGTH_FORMATS = {'jpeg': 'colorize_strength', 'png': 'colorize_strength_png'}
HINT_STRENGTH_FORMATS = {'jpeg': 'colorize_hints_strength', 'png': 'colorize_hints_strength_png'}
# Every colouring signature by (takes hints, takes a strength).
COLOURING = {(False, False): FORMATS, (True, False): HINT_FORMATS, (False, True): STRENGTH_FORMATS,
             (True, True): HINT_STRENGTH_FORMATS}


class ModelError(RuntimeError):
  """The model directory does not hold a usable export."""


def failure(error):
  """The kind of serving/errors.py for a model call that raised `error` (the one place that tells them apart)."""
  if isinstance(error, (tf.errors.ResourceExhaustedError, MemoryError)):
    return errors.OutOfMemory(f'the server ran out of memory ({first_line(error)}): retry later, or send a smaller '
                              'photo or batch')
  if isinstance(error, tf.errors.InvalidArgumentError):
    return errors.BadInput(f'the model cannot decode or colour it: {first_line(error)}')
  if isinstance(error, (ValueError, TypeError)):   # arguments that do not fit the signature (TF Serving's tensors)
    return errors.BadInput(f'the signature cannot take these inputs: {first_line(error)}')
  return errors.ModelFailed(f'the model failed on it: {type(error).__name__}: {first_line(error)}')


def find_version(model_dir):
  """(version dir, version) of an export base (highest numbered version) or of a version dir itself."""
  model_dir = model_dir.rstrip('/')
  if tf.io.gfile.exists(posixpath.join(model_dir, 'saved_model.pb')):
    name = posixpath.basename(model_dir)
    return model_dir, int(name) if name.isdigit() else 0
  if not tf.io.gfile.isdir(model_dir):
    raise ModelError(f'{model_dir} does not exist: pass --model the export directory that '
                     'python -m trainer.export --job-dir JOB_DIR wrote (JOB_DIR/export)')
  versions = [int(d.rstrip('/')) for d in tf.io.gfile.listdir(model_dir) if d.rstrip('/').isdigit()
              and tf.io.gfile.exists(posixpath.join(model_dir, d.rstrip('/'), 'saved_model.pb'))]
  if not versions:
    raise ModelError(f'{model_dir} holds no SavedModel: expected {model_dir}/<version>/saved_model.pb, as '
                     'python -m trainer.export --job-dir JOB_DIR writes it to JOB_DIR/export')
  version = max(versions)
  return posixpath.join(model_dir, str(version)), version


def first_line(error):
  text = getattr(error, 'message', None) or str(error)
  return text.strip().splitlines()[0] if text.strip() else type(error).__name__


class Colorizer:
  """An exported colorizer, loaded once; thread-safe (TF concrete functions may be called concurrently)."""

  def __init__(self, model_dir):
    self.path, self.version = find_version(model_dir)
    try:
      self._model = tf.saved_model.load(self.path)
    except Exception as e:  # TF raises many kinds for a broken export
      raise ModelError(f'cannot load the SavedModel in {self.path}: {first_line(e)}') from e
    missing = [s for s in SIGNATURES if s not in self._model.signatures]
    if missing:
      raise ModelError(f'{self.path} lacks the signature(s) {", ".join(missing)}: re-export it with '
                       'python -m trainer.export')
    self.info = self._read_info()

  def _read_info(self):
    path = posixpath.join(self.path, jobdir.INFO_FILE)
    try:
      with tf.io.gfile.GFile(path) as f:
        return json.load(f)
    except (tf.errors.NotFoundError, json.JSONDecodeError) as e:
      raise ModelError(f'{path} is missing or broken ({first_line(e)}): re-export the model with '
                       'python -m trainer.export') from e

  @property
  def image_size(self):
    return int(self.info['image_size'])

  @property
  def signature_names(self):
    return [s for s in SIGNATURES + OPTIONAL_SIGNATURES if s in self._model.signatures]

  @property
  def takes_hints(self):
    """Whether the model was trained with --hints (it follows the user's colours)."""
    return 'colorize_hints' in self._model.signatures

  @property
  def suggests(self):
    """Whether the model can suggest colours at a point (classification models)."""
    return 'suggest_colours' in self._model.signatures

  def _need(self, signature, why):
    if signature not in self._model.signatures:
      raise errors.Unsupported(f'this model ({self.path}) {why}')

  def signature(self, name):
    return self._model.signatures[name]

  def __call__(self, name, **inputs):
    """Run signature `name` on tensors; returns {output name: numpy array}."""
    return {k: v.numpy() for k, v in self.signature(name)(**inputs).items()}

  def run(self, name, **inputs):
    """Run signature `name` on arrays or lists (made tensors here); a failure raises its kind (`failure`)."""
    try:
      return self(name, **{k: tf.constant(v) for k, v in inputs.items()})
    except (tf.errors.OpError, MemoryError, ValueError, TypeError) as e:
      raise failure(e) from None

  def colorize(self, images, fmt='jpeg', hints=None, strength=None):
    """Encoded images -> per image the encoded colour image (bytes) or an errors.ServingError, in order.

    hints: per image a list of user_hints.Hint (or None: automatic for all); images whose list is empty are
    coloured automatically. strength: None (the export's default, through the signatures without a strength:
    the bytes of before), or a colour strength 0..1 for every image (the *_strength signatures). One graph call
    for the whole batch; if it fails (a file that passed the header check but does not decode, or a batch too
    large for memory), each image is retried alone so that one bad file costs only itself.
    """
    if not images:
      return []
    hinted = hints is not None and any(hints)
    inputs = {}
    if hinted:
      self._need('colorize_hints', 'was trained without hints: train it with python -m trainer.task --hints')
      points, colours, radius = user_hints.arrays(hints)
      inputs.update(points=points, colours=colours, radius=radius)
    else:
      hints = [[]] * len(images)
    name = COLOURING[hinted, strength is not None][fmt]
    if strength is not None:
      self._need(name, 'has no colour-strength control (a classification model exported before it existed: '
                 're-export it with python -m trainer.export; an mse model has none)')
      inputs['strength'] = np.full(len(images), strength, np.float32)
    try:
      return list(self.run(name, image_bytes=list(images), **inputs)['image_bytes'])
    except errors.ServingError as e:
      if len(images) == 1:
        return [e]
    return [result for image, h in zip(images, hints) for result in self.colorize([image], fmt, [h], strength)]

  def suggest(self, image, at, hints=()):
    """The likeliest distinct colours at points `at` [(x, y), ...] of one encoded image, given its hints:
    per point a list of ((r, g, b), probability), likeliest first."""
    self._need('suggest_colours', 'has no colour distribution to suggest from (it was trained with --loss mse)')
    points, colours, radius = user_hints.arrays([list(hints)])
    out = self.run('suggest_colours', image_bytes=[image], points=points, colours=colours, radius=radius,
                   at=np.asarray([at], np.float32).reshape(1, -1, 2))
    return [[(tuple(int(c) for c in rgb), float(p)) for rgb, p in zip(rgbs, ps)]
            for rgbs, ps in zip(out['colours'][0], out['probabilities'][0])]

  def warm_up(self):
    """One call of each image signature (with hints too), so the first user does not wait for TF's graph start-up."""
    probe = tf.io.encode_png(np.full((32, 48, 3), 128, np.uint8)).numpy()
    hint = [user_hints.make(0.5, 0.5, '#3060c0')]
    for fmt in FORMATS:
      self.colorize([probe], fmt)
      if self.takes_hints:
        self.colorize([probe], fmt, hints=[hint])
    if self.suggests:
      self.suggest(probe, [(0.5, 0.5)], hint if self.takes_hints else ())
