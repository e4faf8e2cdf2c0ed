"""The colorization network (Deep Koalarization: Baldassarre et al. 2017) and how its output becomes ab.

  encoder  strided 3x3 convs: L canvas [S, S, 1] -> [S/8, S/8, 256] (32 x 32 for the 256 canvas)
  fusion   the embedding repeated over that grid, concatenated, 1x1 conv to 256   (--model fusion only)
  decoder  convs and 2x upsampling back to S x S

`--model beta` is the same network without the fusion (no embedding input). The head depends on the loss:
`mse` regresses ab / AB_SCALE at full resolution through tanh; `classification` predicts logits over the
in-gamut ab bins at S/4, as Zhang et al. do (a full-resolution [S, S, Q] output would cost 16x the memory),
decoded with the annealed mean and upsampled. `predict_ab` is the one place outputs become Lab ab.
"""
import keras
import tensorflow as tf
from keras import layers

from trainer import abbins

MODELS = ('fusion', 'beta')
LOSSES = ('mse', 'classification')
AB_SCALE = 128.0   # regression targets are ab / AB_SCALE, inside tanh's range for every sRGB colour


def build(model='fusion', loss='mse', image_size=256, embedding_dim=1000, width=1.0):
  """The Keras model: inputs {'l': [B, S, S, 1] L in 0..100} (+ 'embedding': [B, D] for fusion).

  Outputs: mse -> [B, S, S, 2] ab / AB_SCALE; classification -> [B, S/4, S/4, Q] bin logits. The last layer
  computes in float32 so mixed precision keeps a float32 loss.
  """
  if model not in MODELS:
    raise ValueError(f'unknown model {model!r}; choose one of {", ".join(MODELS)}')
  if loss not in LOSSES:
    raise ValueError(f'unknown loss {loss!r}; choose one of {", ".join(LOSSES)}')
  if image_size % 8:
    raise ValueError(f'the image size must be a multiple of 8 (three stride-2 stages), got {image_size}')

  def conv(x, filters, strides=1):
    # Batch normalisation (as Zhang et al.'s network has) trains this plain conv stack several times faster;
    # synchronized, so the statistics are the global batch's whatever the number of replicas.
    x = layers.Conv2D(max(4, round(filters * width)), 3, strides=strides, padding='same', use_bias=False)(x)
    return layers.ReLU()(layers.BatchNormalization(synchronized=True)(x))

  l = keras.Input((image_size, image_size, 1), name='l')
  inputs = {'l': l}
  x = layers.Rescaling(1 / 50.0, offset=-1.0)(l)
  for filters, strides in ((64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 1), (256, 1)):
    x = conv(x, filters, strides)
  if model == 'fusion':
    inputs['embedding'] = embedding = keras.Input((embedding_dim,), name='embedding')
    grid = image_size // 8
    tiled = layers.Reshape((grid, grid, embedding_dim))(layers.RepeatVector(grid * grid)(embedding))
    x = layers.Conv2D(max(4, round(256 * width)), 1, activation='relu')(layers.Concatenate()([x, tiled]))
  x = layers.UpSampling2D()(conv(x, 128))
  x = conv(conv(x, 64), 64)                                   # S/4
  if loss == 'classification':
    out = layers.Conv2D(abbins.num_bins(), 1, dtype='float32', name='ab_logits')(x)
  else:
    x = conv(layers.UpSampling2D()(x), 32)
    x = layers.Conv2D(2, 3, padding='same', activation='tanh', dtype='float32')(x)
    out = layers.UpSampling2D(dtype='float32', name='ab')(x)
  return keras.Model(inputs, out, name=f'colorizer_{model}_{loss}')


def features(model, batch):
  """The entries of batch (a dict with 'l' and 'embedding') that this model takes."""
  return {name: batch[name] for name in model.input}


def predict_ab(outputs, loss, image_size):
  """Model outputs -> ab [B, S, S, 2] float32 in Lab units."""
  if loss == 'classification':
    return tf.image.resize(abbins.annealed_mean(outputs), [image_size, image_size], method='bilinear')
  return tf.cast(outputs, tf.float32) * AB_SCALE
