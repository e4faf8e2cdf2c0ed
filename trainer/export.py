r"""Export a trained colorizer as a self-contained SavedModel in TF Serving's layout.

  python -m trainer.export --job-dir DIR [--checkpoint PATH] [--temperature T] [--strength S]

Writes JOB_DIR/export/<version>/ (version: seconds since the epoch, always increasing), or the SavedModel
itself into $AIP_MODEL_DIR on Vertex AI, from the latest checkpoint (or --checkpoint). The frozen embedder is
rebuilt from the records' metadata (its weights file verified against the recorded sha256) and saved inside,
so serving needs nothing else. Signatures (one tf.function each, as in TF Model Garden's export_base.py):

  serving_default  image_bytes tf.string [N]: encoded images of any size and format tf.io.decode_image reads
                   -> image_bytes tf.string [N]: JPEG of the colour image at the input's own resolution
  colorize_png     the same with PNG output
  raw              l float32 [N, S, S, 1] (the L canvas) -> ab float32 [N, S, S, 2], embedding float32 [N, D]
models trained with --hints also (trainer/hints.py):
  colorize_hints   image_bytes [N], points float32 [N, K, 2] (x, y in 0..1 from the photo's left and top; a
                   point outside 0..1 is padding), colours float32 [N, K, 3] (sRGB 0..255), radius float32 [N, K]
                   (half side as a share of the photo's long side; <= 0: the default) -> image_bytes: JPEG
  colorize_hints_png  the same with PNG output
classification models also (the colour strength, per image: 0 palest, 1 most vivid; abbins.Decoding):
  colorize_strength      image_bytes [N], strength float32 [N] -> image_bytes: JPEG (at the export's default
                         strength, colorizer.json's colour_strength, the bytes of serving_default)
  colorize_strength_png  the same with PNG output
  colorize_hints_strength, colorize_hints_strength_png   colorize_hints' inputs and strength (with --hints)
  suggest_colours  the colorize_hints inputs and at float32 [N, M, 2] (points as above) -> colours uint8
                   [N, M, 6, 3] (sRGB, at the photo's lightness there), probabilities [N, M, 6]: the likeliest
                   distinct colours at each point, given the hints (a palette for the page)

ab is predicted on the letterboxed canvas, cut back out of it, upsampled to H x W and joined with the input's
full-resolution L. assets.extra/colorizer.json describes the model for the serving front ends.
"""
from pipeline import quiet

tf = quiet.tensorflow()  # before anything else imports it, so its start-up notices stay off the terminal

import json
import posixpath
import sys
import time

import keras
from absl import app, logging

from pipeline import cli, colour, embedder, letterbox
from trainer import abbins, config, console, hints as hints_lib, jobdir, model as model_lib, runinfo

JPEG_QUALITY = 95
STRIP = 65536   # pixels coloured at a time at full resolution (see ColorizerModule._colorize)


class ExportError(RuntimeError):
  """The SavedModel cannot be built as asked (no checkpoint, embedder weights missing or different)."""


class ColorizerModule(tf.Module):
  """The exported graph: frozen embedder + colorizer, and the serving signatures as functions."""

  def __init__(self, colorizer, embedder_model, loss, image_size, decoding=abbins.Decoding(), takes_hints=None):
    """decoding: how classification logits become ab (abbins.Decoding: the colour strength and its default);
    takes_hints: whether the colorizer has a hints input (default: read from it)."""
    super().__init__()
    self._decoding = decoding
    self.colorizer = colorizer
    self.embedder = embedder_model
    self._loss = loss
    self._size = image_size
    self.takes_hints = model_lib.takes_hints(colorizer) if takes_hints is None else takes_hints
    # Traced once and called by every signature (tracing the embedder is the slow part of an export).
    self._forward = tf.function(self._forward_fn, input_signature=[
        self._canvas_spec(), tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name='hints')])

  def _canvas_spec(self):
    return tf.TensorSpec([None, self._size, self._size, 1], tf.float32, name='l')

  def _forward_fn(self, l, hints):
    """(the colorizer's outputs, the embedding) of L canvases and hint maps (ignored by a model without hints)."""
    embedding = self.embedder(l, training=False)
    batch = {'l': l, 'embedding': embedding, 'hints': hints}
    outputs = self.colorizer(model_lib.features(self.colorizer, batch), training=False)
    if self.takes_hints:   # each hint's colour spread over its surface (no hint: no change)
      outputs = model_lib.spread_prior(outputs, hints, l, self._size)
    return outputs, embedding

  def _predict(self, l, hints=None, strength=None):
    """(ab, embedding); strength: colour strengths [N] (classification), None: the export's default."""
    outputs, embedding = self._forward(l, hints_lib.none(l) if hints is None else hints)
    return model_lib.predict_ab(outputs, self._loss, self._size, self._decoding, strength), embedding

  @tf.function
  def raw(self, l):
    ab, embedding = self._predict(l)
    return {'ab': ab, 'embedding': embedding}

  def _prepare(self, image_bytes):
    """Encoded images -> (L canvases [N, S, S, 1], content boxes [N, 4], shapes [N, 3], the decoded photos)."""
    size = self._size

    def prepare(data):
      # JPEG with the accurate DCT, as the preprocessing job's decoder (Pillow) does: TF's default fast DCT is
      # up to 16 levels off. Anything else tf.io.decode_image reads; GIF: the first frame. channels=0 keeps a
      # grey photo's single channel: its full-resolution L is then a lookup in a table of 256, and no three
      # copies of a 30-megapixel scan are made. Grey + alpha and RGBA lose their alpha, as before.
      image = tf.cond(tf.io.is_jpeg(data),
                      lambda: tf.io.decode_jpeg(data, channels=0, dct_method='INTEGER_ACCURATE'),
                      lambda: tf.io.decode_image(data, channels=0, expand_animations=False))
      image = tf.cond(tf.shape(image)[2] < 3, lambda: image[..., :1], lambda: image[..., :3])
      canvas, box = letterbox.letterbox(image, size)   # as the preprocessing job: letterbox sRGB, then Lab
      canvas = tf.broadcast_to(canvas, [size, size, 3])   # (a grey canvas's three channels are equal)
      # The photo itself travels flattened (uint8) in a ragged tensor: the sizes differ.
      return colour.rgb_to_lab(canvas / 255.0)[..., :1], box, tf.shape(image), tf.reshape(image, [-1])

    return tf.map_fn(prepare, image_bytes, fn_output_signature=(
        tf.TensorSpec([size, size, 1], tf.float32), tf.TensorSpec([4], tf.int32), tf.TensorSpec([3], tf.int32),
        tf.RaggedTensorSpec([None], tf.uint8)))

  def _colorize(self, image_bytes, encode, user_hints=None, strength=None):
    """user_hints: (points, colours, radius) as colorize_hints takes them, or None (automatic); strength: as
    colorize_strength takes it, or None (the exported temperature)."""
    l_canvas, boxes, shapes, pixels = self._prepare(image_bytes)
    hints = hints_lib.from_user(self._size, boxes, *user_hints) if user_hints else None
    ab, _ = self._predict(l_canvas, hints, strength)   # one batch through the networks

    def finish(args):
      ab, box, shape, pixels = args
      count = shape[0] * shape[1]
      # L at full resolution from the photo, ab upsampled from the canvas, straight to 8 bits (pipeline.colour),
      # in strips of STRIP pixels: the per-pixel temporaries exist for one strip at a time, so a 30 MP photo
      # needs no float copies of itself but ab (it added 2.1 GB to the process before, 0.6 GB now; BENCHMARKS.md).
      strips = (count + STRIP - 1) // STRIP
      pad = strips * STRIP - count
      ab = tf.reshape(letterbox.unletterbox(ab, box, shape[0], shape[1]), [count, 2])
      ab = tf.reshape(tf.pad(ab, [[0, pad], [0, 0]]), [strips, STRIP, 2])
      pixels = tf.reshape(tf.pad(tf.reshape(pixels, [count, shape[2]]), [[0, pad], [0, 0]]),
                          [strips, STRIP, shape[2]])

      def strip(args):
        pixels, ab = args
        return tf.cond(tf.shape(pixels)[1] == 1,
                       lambda: colour.photo_rgb_u8(tf.ensure_shape(pixels, [STRIP, 1]), ab),
                       lambda: colour.photo_rgb_u8(tf.ensure_shape(pixels, [STRIP, 3]), ab))

      rgb = tf.map_fn(strip, (pixels, ab), fn_output_signature=tf.TensorSpec([STRIP, 3], tf.uint8))
      return encode(tf.reshape(tf.reshape(rgb, [-1, 3])[:count], [shape[0], shape[1], 3]))

    return {'image_bytes': tf.map_fn(finish, (ab, boxes, shapes, pixels), fn_output_signature=tf.string)}

  @tf.function
  def colorize_jpeg(self, image_bytes):
    return self._colorize(image_bytes, self._jpeg)

  @tf.function
  def colorize_png(self, image_bytes):
    return self._colorize(image_bytes, tf.io.encode_png)

  @tf.function
  def colorize_hints(self, image_bytes, points, colours, radius):
    return self._colorize(image_bytes, self._jpeg, (points, colours, radius))

  @tf.function
  def colorize_hints_png(self, image_bytes, points, colours, radius):
    return self._colorize(image_bytes, tf.io.encode_png, (points, colours, radius))

  @tf.function
  def colorize_strength(self, image_bytes, strength):
    return self._colorize(image_bytes, self._jpeg, strength=strength)

  @tf.function
  def colorize_strength_png(self, image_bytes, strength):
    return self._colorize(image_bytes, tf.io.encode_png, strength=strength)

  @tf.function
  def colorize_hints_strength(self, image_bytes, points, colours, radius, strength):
    return self._colorize(image_bytes, self._jpeg, (points, colours, radius), strength)

  @tf.function
  def colorize_hints_strength_png(self, image_bytes, points, colours, radius, strength):
    return self._colorize(image_bytes, tf.io.encode_png, (points, colours, radius), strength)

  @staticmethod
  def _jpeg(rgb):
    return tf.io.encode_jpeg(rgb, quality=JPEG_QUALITY)

  @tf.function
  def suggest_colours(self, image_bytes, points, colours, radius, at):
    l_canvas, boxes, _, _ = self._prepare(image_bytes)
    hints = hints_lib.from_user(self._size, boxes, points, colours, radius)
    logits, _ = self._forward(l_canvas, hints)
    yx, _ = hints_lib.to_canvas(self._size, boxes, tf.clip_by_value(at, 0.0, 1.0))
    rgb, share = hints_lib.suggestions(logits, l_canvas, yx)
    return {'colours': rgb, 'probabilities': share}

  def signatures(self):
    images = tf.TensorSpec([None], tf.string, name='image_bytes')
    signatures = {'serving_default': self.colorize_jpeg.get_concrete_function(images),
                  'colorize_png': self.colorize_png.get_concrete_function(images),
                  'raw': self.raw.get_concrete_function(self._canvas_spec())}
    user_hints = (tf.TensorSpec([None, None, 2], tf.float32, name='points'),
                  tf.TensorSpec([None, None, 3], tf.float32, name='colours'),
                  tf.TensorSpec([None, None], tf.float32, name='radius'))
    if self.takes_hints:
      signatures['colorize_hints'] = self.colorize_hints.get_concrete_function(images, *user_hints)
      signatures['colorize_hints_png'] = self.colorize_hints_png.get_concrete_function(images, *user_hints)
    if self._loss == 'classification':   # mse: one colour per pixel, no distribution to sharpen or soften
      strength = tf.TensorSpec([None], tf.float32, name='strength')
      signatures['colorize_strength'] = self.colorize_strength.get_concrete_function(images, strength)
      signatures['colorize_strength_png'] = self.colorize_strength_png.get_concrete_function(images, strength)
      if self.takes_hints:
        signatures['colorize_hints_strength'] = self.colorize_hints_strength.get_concrete_function(
            images, *user_hints, strength)
        signatures['colorize_hints_strength_png'] = self.colorize_hints_strength_png.get_concrete_function(
            images, *user_hints, strength)
      signatures['suggest_colours'] = self.suggest_colours.get_concrete_function(
          images, *user_hints, tf.TensorSpec([None, None, 2], tf.float32, name='at'))
    return signatures


def load_embedder(info, image_size):
  """The frozen embedder the records were made with, rebuilt from metadata['embedder']."""
  try:
    weights = embedder.check_weights(info)
  except embedder.EmbedderError as e:
    raise ExportError(str(e)) from None
  if weights == 'random':
    logging.warning('the embedder has RANDOM weights (as the records were made): this export is for tests only')
  return embedder.build(info['name'], weights, info.get('precision', 'float32'), image_size)


def load_colorizer(run, checkpoint):
  """The colorizer of run.json (either layout, trainer.runinfo) with the checkpoint's weights, in float32 whatever
  it trained in."""
  model = runinfo.describe(run)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy('float32')
  try:
    # The encoder's weights, frozen or not, are in the checkpoint with the rest: nothing to load here.
    colorizer = model_lib.build(model['model'], model['loss'], model['image_size'], model['embedder']['dim'],
                                model['width'], encoder=(model['encoder'] or {}).get('name'),
                                output_stride=model['output_stride'] or 4, hints=bool(model['hints']))
  finally:
    keras.config.set_dtype_policy(previous)
  tf.train.Checkpoint(model=colorizer).restore(checkpoint).expect_partial().assert_existing_objects_matched()
  return colorizer


def _version_dir(p):
  if p.export_direct:
    return p.export_base
  versions = [int(d.rstrip('/')) for d in (tf.io.gfile.listdir(p.export_base) if tf.io.gfile.isdir(p.export_base)
                                            else []) if d.rstrip('/').isdigit()]
  return posixpath.join(p.export_base, str(max([int(time.time())] + [v + 1 for v in versions])))


def export(job_dir, checkpoint=None, temperature=None, strength=None):
  """Export the latest checkpoint of job_dir (or `checkpoint`); returns the SavedModel's directory.

  Classification models: temperature, the annealed mean's at colour strength 0.5, and strength, the default colour
  strength (abbins.Decoding); each by default the run's (run.json).
  """
  p = jobdir.paths(job_dir)
  run = runinfo.read(p)
  checkpoint = checkpoint or tf.train.latest_checkpoint(p.checkpoints)
  settings = run['config']
  temperature = temperature or settings.get('temperature', abbins.TEMPERATURE)
  strength = settings.get('strength', abbins.DEFAULT_STRENGTH) if strength is None else strength
  if not checkpoint:
    raise ExportError(f'{p.checkpoints} holds no checkpoint: train first with python -m trainer.task')
  loss, size = settings['loss'], run['image_size']
  decoding = abbins.Decoding.of_training(run['ab_histogram']['counts'], settings.get('rebalance_mix', abbins.GAMMA),
                                         temperature, strength)
  module = ColorizerModule(load_colorizer(run, checkpoint), load_embedder(run['embedder'], size), loss, size,
                           decoding)
  step = int(tf.train.load_variable(checkpoint, 'step/.ATTRIBUTES/VARIABLE_VALUE'))
  final = _version_dir(p)
  classification = loss == 'classification'
  info = runinfo.export_info(run, step=step, checkpoint=checkpoint, ab_bins=abbins.num_bins(),
                             annealed_mean_temperature=temperature if classification else None,
                             colour_strength=strength if classification else None)
  save(module, info, final, staged=not p.export_direct)
  logging.info('exported step %d of %s to %s', step, checkpoint, final)
  return final


def save(module, info, final, staged=True):
  """Save the module's SavedModel and colorizer.json (`info`) so that `final` appears complete or not at all.

  TF Serving watches the export base and loads each new numbered directory. The version is written under a
  name it ignores (.tmp-N) and then published: on a local file system by one rename (atomic); on gs:// and other
  object stores, where a directory rename is a copy per object in no set order, by copying every file and
  saved_model.pb last, since a loader (TF Serving, serving.exported) takes a version only once its saved_model.pb
  is there. A failed export removes what it wrote. staged=False writes straight into `final` ($AIP_MODEL_DIR,
  which Vertex AI reads only after the job has ended).
  """
  target = posixpath.join(posixpath.dirname(final), f'.tmp-{posixpath.basename(final)}') if staged else final
  try:
    tf.saved_model.save(module, target, signatures=module.signatures())
    tf.io.gfile.makedirs(posixpath.join(target, 'assets.extra'))
    with tf.io.gfile.GFile(posixpath.join(target, jobdir.INFO_FILE), 'w') as f:
      f.write(json.dumps(info, indent=2, sort_keys=True))
    if staged:
      _publish(target, final)
  except BaseException:
    if staged and tf.io.gfile.exists(final):   # a half-copied version, without its saved_model.pb
      tf.io.gfile.rmtree(final)
    raise
  finally:
    if staged and tf.io.gfile.exists(target):
      tf.io.gfile.rmtree(target)


def _publish(staging, final):
  if '://' not in final:
    tf.io.gfile.rename(staging, final)
    return
  files = [posixpath.relpath(posixpath.join(root, name), staging)
           for root, _, names in tf.io.gfile.walk(staging) for name in names]
  for name in sorted(files, key=lambda n: n == tf.saved_model.SAVED_MODEL_FILENAME_PB):   # saved_model.pb last
    tf.io.gfile.copy(posixpath.join(staging, name), posixpath.join(final, name), overwrite=True)


def main(cfg, argv):
  console.quiet_tensorflow_info()
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not cfg.job_dir:
    raise app.UsageError('--job-dir DIR is required (the --job-dir of python -m trainer.task)')
  try:
    path = export(cfg.job_dir, cfg.checkpoint, cfg.temperature, cfg.strength)
  except (ExportError, jobdir.RunError, embedder.EmbedderError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'Exported {path}', flush=True)
  return 0


if __name__ == '__main__':
  cli.run(main, config.ExportConfig)
