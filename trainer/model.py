"""The colorization networks and how their output becomes ab.

`unet` (the default): the encoder is a pretrained ImageNet classifier's trunk (pipeline.embedder.pyramid: its
features at strides 2 ... 32 of the grey canvas), the embedding is fused at the stride-32 bottleneck, and a U-Net
decoder joins the levels on the way back up. The decoder learns colour from what the classifier already
recognises, as DeOldify's and DDColor's pretrained backbones do, instead of learning to see from the training
photos alone. The encoder is frozen as built; with fine_tune_encoder its weights train too (batch norm frozen),
which trainer.task does by default from a fifth of the run (--fine-tune-from; 0 keeps it frozen).

Deep Koalarization's network (Baldassarre et al. 2017), `fusion`:
  encoder  strided 3x3 convs: L canvas [S, S, 1] -> [S/8, S/8, 256] (32 x 32 for the 256 canvas)
  fusion   the embedding repeated over that grid, concatenated, 1x1 conv to 256
  decoder  convs and 2x upsampling back to S x S
`beta` is the same network without the fusion (no embedding input).

With hints=True every model also takes `hints` [B, S, S, 3] (trainer/hints.py: the user's ab squares and their
mask, Zhang et al. 2017): the unet's decoder sees them at each level it works at (each cell's mean hint colour
and whether it holds one), where they meet the encoder's edges on the way back up; fusion and beta take them
beside L at their input, as Zhang's network does. At the output a fixed prior says each hint's colour where it
is (_hint_prior). The head depends on the loss:
`mse` regresses ab / AB_SCALE at full resolution through tanh; `classification` predicts logits over the
in-gamut ab bins at S/4, as Zhang et al. do (a full-resolution [S, S, Q] output would cost 16x the memory),
decoded with the annealed mean and upsampled. `predict_ab` is the one place outputs become Lab ab.
"""
import keras
import tensorflow as tf
from keras import layers

from pipeline import embedder as embedder_lib
from trainer import abbins, propagate

MODELS = ('unet', 'fusion', 'beta')
PRETRAINED = ('unet',)   # the models whose encoder is a pretrained classifier (--encoder, --encoder-weights)
LOSSES = ('mse', 'classification')
AB_SCALE = 128.0   # regression targets are ab / AB_SCALE, inside tanh's range for every sRGB colour


def size_multiple(model):
  """The image sizes a model takes are multiples of this: 2 ** its stride-2 stages."""
  return 32 if model in PRETRAINED else 8


def encoder_of(model):
  """The unet's pretrained encoder (a nested Keras model)."""
  return next(layer for layer in model.layers if layer.name.startswith('encoder_'))


def _unfreeze(encoder):
  encoder.trainable = True
  for layer in _all_layers(encoder):
    if isinstance(layer, layers.BatchNormalization):
      layer.trainable = False   # Keras 3: a frozen batch norm runs in inference mode


def _all_layers(model):
  for layer in model.layers:
    yield layer
    if hasattr(layer, 'layers'):
      yield from _all_layers(layer)


def build(model='fusion', loss='mse', image_size=256, embedding_dim=1000, width=1.0, encoder='mobilenet_v2',
          encoder_weights=None, output_stride=4, hints=False, fine_tune_encoder=False):
  """The Keras model: inputs {'l': [B, S, S, 1] L in 0..100} (+ 'embedding': [B, D] for fusion and unet,
  + 'hints': [B, S, S, 3] with hints=True).

  Outputs: mse -> [B, S, S, 2] ab / AB_SCALE; classification -> [B, S/4, S/4, Q] bin logits. The last layer
  computes in float32 so mixed precision keeps a float32 loss. unet only: encoder names the classifier
  (pipeline.embedder.SPECS) and encoder_weights its weights (None: left for a checkpoint to restore);
  output_stride 2 takes the decoder one level further, to logits at S/2. fine_tune_encoder: its weights train,
  its batch normalisation stays frozen and in inference mode (the usual way to fine-tune a classifier trunk on
  small batches).
  """
  if model not in MODELS:
    raise ValueError(f'unknown model {model!r}; choose one of {", ".join(MODELS)}')
  if loss not in LOSSES:
    raise ValueError(f'unknown loss {loss!r}; choose one of {", ".join(LOSSES)}')
  if output_stride not in (2, 4) or (output_stride != 4 and model not in PRETRAINED):
    raise ValueError(f'output_stride {output_stride}: the unet takes 2 or 4, the other models 4')
  if image_size % size_multiple(model):
    raise ValueError(f'the image size must be a multiple of {size_multiple(model)} for {model}, got {image_size}')

  def conv(x, filters, strides=1, kernel=3):
    # Batch normalisation (as Zhang et al.'s network has) trains this plain conv stack several times faster;
    # synchronized, so the statistics are the global batch's whatever the number of replicas.
    x = layers.Conv2D(max(4, round(filters * width)), kernel, strides=strides, padding='same', use_bias=False)(x)
    return layers.ReLU()(layers.BatchNormalization(synchronized=True)(x))

  def head(x):
    if loss == 'classification':
      logits = layers.Conv2D(abbins.num_bins(), 1, dtype='float32', name='ab_logits')(x)
      return _hint_prior(logits, inputs['hints'], image_size) if hints else logits
    if x.shape[1] < image_size // 2:
      x = layers.UpSampling2D()(x)
    x = conv(x, 32)
    x = layers.Conv2D(2, 3, padding='same', activation='tanh', dtype='float32')(x)
    ab = layers.UpSampling2D(dtype='float32', name='ab')(x)
    return _hint_prior(ab, inputs['hints'], image_size) if hints else ab

  l = keras.Input((image_size, image_size, 1), name='l')
  inputs = {'l': l}
  if hints:
    inputs['hints'] = keras.Input((image_size, image_size, 3), name='hints')
  name = f'colorizer_{model}_{loss}' + ('_hints' if hints else '')
  if model == 'unet':
    inputs['embedding'] = keras.Input((embedding_dim,), name='embedding')
    pyramid = embedder_lib.pyramid(encoder, encoder_weights, image_size)
    if fine_tune_encoder:
      _unfreeze(pyramid)
    levels = pyramid(l)
    at = (lambda level: _hints_at(inputs['hints'], image_size // level.shape[1])) if hints else None
    return keras.Model(inputs, head(_unet_decoder(levels, inputs['embedding'], conv, output_stride, at)), name=name)
  x = layers.Rescaling(1 / 50.0, offset=-1.0)(l)
  if hints:
    x = layers.Concatenate()([x, inputs['hints']])
  for filters, strides in ((64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 1), (256, 1)):
    x = conv(x, filters, strides)
  if model == 'fusion':
    inputs['embedding'] = embedding = keras.Input((embedding_dim,), name='embedding')
    grid = image_size // 8
    tiled = layers.Reshape((grid, grid, embedding_dim))(layers.RepeatVector(grid * grid)(embedding))
    x = layers.Conv2D(max(4, round(256 * width)), 1, activation='relu')(layers.Concatenate()([x, tiled]))
  x = layers.UpSampling2D()(conv(x, 128))
  x = conv(conv(x, 64), 64)                                   # S/4
  return keras.Model(inputs, head(x), name=name)


def _hints_at(hints, stride):
  return layers.Lambda(lambda h: _pool_hints(h, stride), dtype='float32', name=f'hints_s{stride}')(hints)


def _hint_prior(outputs, hints, image_size):
  """Where there is a hint, the output says its colour: the network learns to carry hints to the rest of the
  photo (along edges, through the decoder), and the place the user chose gets the chosen colour from the first
  step on, so even a briefly trained model follows its hints where they are. (Serving adds the spread to the
  rest of the photo: spread_prior.)"""
  def add(args):
    out, h = args
    own = _pool_hints(h, image_size // out.shape[1])
    return _pull(out, own[..., :2], own[..., 2:])
  return layers.Lambda(add, dtype='float32', name='hint_prior')([outputs, hints])


def told(hints, l, image_size, res):
  """What the hints tell each cell of a res x res output: (ab [B, res, res, 2] as in the hint map, certainty
  [B, res, res, 1]). A hinted cell: the hints' mean colour there, certainty 1. Any other: the colour the hints
  spread to it (trainer/propagate.py: from hints as light as it, and near), as certain as the spread is."""
  own = _pool_hints(hints, image_size // res)
  grid = min(res, propagate.GRID)
  spread_ab, confidence = propagate.spread(
      tf.nn.avg_pool2d(tf.cast(l, 'float32'), image_size // grid, image_size // grid, 'VALID'),
      _pool_hints(hints, image_size // grid))
  if grid < res:
    spread_ab = tf.image.resize(spread_ab, [res, res])
    confidence = tf.image.resize(confidence, [res, res])
  flag = own[..., 2:]
  return flag * own[..., :2] + (1.0 - flag) * spread_ab, flag + (1.0 - flag) * confidence


def spread_prior(outputs, hints, l, image_size):
  """A hint model's outputs (its own prior has set the hinted cells) with each hint's colour spread over the
  rest of the photo where it is as light and near (`told`), as strongly as the spread is certain. The export
  applies it; training does not: trained with it, the network learnt less automatic colour (with no hint,
  19.8 dB against 21.2 on the hints study's val photos), because the spread already explained most of the
  hinted images' loss (BUILD_NOTES.md)."""
  ab, certainty = told(hints, l, image_size, outputs.shape[1])
  own = _pool_hints(hints, image_size // outputs.shape[1])[..., 2:]
  return _pull(tf.cast(outputs, tf.float32), ab, (1.0 - own) * certainty)


def _pull(out, ab, certainty):
  """out moved towards the colour ab (as in the hint map) by certainty [..., 1] in [0, 1]. classification: each
  bin's logit gets -c d^2 / (2 SIGMA^2) for its distance d to ab, the soft encoding of that colour multiplied
  into the predicted distribution; mse (ab / AB_SCALE at full resolution): a step of c towards it."""
  if out.shape[-1] == 2:
    return out + certainty * (ab - out)
  d2 = tf.reduce_sum(tf.square(ab[..., None, :] * AB_SCALE - abbins.centres()), -1)
  return out - certainty * d2 / (2.0 * abbins.SIGMA ** 2)


def _pool_hints(h, stride):
  """The hint map at 1/stride of the canvas: in each cell the mean colour of its hinted pixels, and whether it
  has any (a mean over the whole cell would fade a 3x3 hint to 1 % of its colour at stride 32)."""
  if stride == 1:
    return tf.cast(h, 'float32')
  total = tf.nn.avg_pool2d(tf.cast(h, 'float32'), stride, stride, 'VALID')
  share = total[..., 2:]
  return tf.concat([total[..., :2] / tf.maximum(share, 1e-6), tf.cast(share > 0, 'float32')], -1)


def _unet_decoder(levels, embedding, conv, output_stride, hints_at=None):
  """The pyramid's levels (strides 2 ... 32) and the embedding -> features at S / output_stride for the head.

  The embedding is fused at the bottleneck as the fusion model fuses it, as log-probabilities: the stored
  float16 softmax underflows to 0 below ~6e-8, and its log spreads the classes the photo is *not* over a useful
  range instead of leaving all but a few at 0.
  """
  s2, s4, s8, s16, s32 = levels
  grid = s32.shape[1]
  log_p = layers.Lambda(lambda p: tf.math.log(tf.cast(p, 'float32') + 1e-6) / 7.0 + 1.0, name='log_embedding',
                        dtype='float32')(embedding)
  tiled = layers.Reshape((grid, grid, embedding.shape[-1]))(layers.RepeatVector(grid * grid)(log_p))
  with_hints = (lambda level: [hints_at(level)]) if hints_at else (lambda level: [])
  x = layers.Concatenate()([conv(s32, 256, kernel=1), tiled] + with_hints(s32))
  x = conv(x, 256, kernel=1)                                          # S/32, the fusion
  ups = ((s16, 256), (s8, 128), (s4, 128)) + (((s2, 64),) if output_stride == 2 else ())
  for skip, filters in ups:
    x = layers.Concatenate()([layers.UpSampling2D(interpolation='bilinear')(x), skip] + with_hints(skip))
    x = conv(conv(x, filters), filters)
  return x


def takes_hints(model):
  return 'hints' in model.input


def features(model, batch):
  """The entries of batch (a dict with 'l', 'embedding' and 'hints') that this model takes; a hint model given
  no 'hints' gets the empty map (the automatic colouring)."""
  if takes_hints(model) and 'hints' not in batch:
    l = batch['l']
    batch = dict(batch, hints=tf.zeros(tf.concat([tf.shape(l)[:3], [3]], 0), tf.float32))
  return {name: batch[name] for name in model.input}


def predict_ab(outputs, loss, image_size, decoding=abbins.Decoding(), strength=None):
  """Model outputs -> ab [B, S, S, 2] float32 in Lab units. classification: decoded as `decoding` says (the annealed
  mean at a colour strength: abbins.Decoding), at `strength` [B] per image or the decoding's default."""
  if loss == 'classification':
    return tf.image.resize(decoding.ab(outputs, strength), [image_size, image_size], method='bilinear')
  return tf.cast(outputs, tf.float32) * AB_SCALE
