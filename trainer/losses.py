"""The two losses, over each image's content box only: the letterbox padding never counts.

Both return one value per example (the mean over that image's content pixels, so small and large photos count
alike); the training step sums them and divides by the global batch size, as tf.distribute requires.
"""
import tensorflow as tf

from trainer import abbins, model as model_lib


def content_mask(box, size):
  """box [B, 4] (top, left, height, width) -> float32 [B, size, size, 1]: 1 inside the content box."""
  pixels = tf.range(size)[None, :]
  top, left, height, width = (box[:, i:i + 1] for i in range(4))
  rows = (pixels >= top) & (pixels < top + height)
  cols = (pixels >= left) & (pixels < left + width)
  return tf.cast(rows[:, :, None, None] & cols[:, None, :, None], tf.float32)


def mse(outputs, ab, box):
  """outputs [B, S, S, 2] (ab / AB_SCALE), ab [B, S, S, 2] Lab -> [B] mean squared error over the content."""
  mask = content_mask(box, tf.shape(ab)[1])
  err = tf.square(tf.cast(outputs, tf.float32) - ab / model_lib.AB_SCALE) * mask
  return tf.reduce_sum(err, axis=[1, 2, 3]) / (2.0 * tf.reduce_sum(mask, axis=[1, 2, 3]))


def classification(outputs, ab, box, weights):
  """outputs [B, s, s, Q] logits at S/4, ab [B, S, S, 2] -> [B] rebalanced cross-entropy over the content.

  The target ab is averaged over each s-pixel's content area (padding excluded), soft-encoded, and every pixel
  is weighted by the rebalancing weight of its nearest bin times the share of it that is content.
  """
  factor = ab.shape[1] // outputs.shape[1]       # static: the pooling window must be
  mask = content_mask(box, ab.shape[1])
  pool = lambda x: tf.nn.avg_pool2d(x, factor, factor, 'VALID')
  coverage = pool(mask)                                       # [B, s, s, 1]: share of content
  target = pool(ab * mask) / tf.maximum(coverage, 1e-6)
  soft, nearest = abbins.soft_encode(target)
  ce = -tf.reduce_sum(soft * tf.nn.log_softmax(tf.cast(outputs, tf.float32)), axis=-1)
  pixel_weight = tf.gather(weights, nearest) * coverage[..., 0]
  return tf.reduce_sum(pixel_weight * ce, axis=[1, 2]) / tf.reduce_sum(coverage, axis=[1, 2, 3])


def make(loss, histogram_counts, rebalance_mix=abbins.GAMMA):
  """The per-example loss fn(outputs, ab, box) for --loss; histogram_counts: metadata['ab_histogram'].

  rebalance_mix: the classification loss weighs each pixel by 1 / ((1 - mix) p + mix / Q) (abbins): 1 for no
  rebalancing, towards 0 for the full inverse frequency of the pixel's colour.
  """
  if loss == 'mse':
    return mse
  weights = tf.constant(abbins.rebalance_weights(histogram_counts, rebalance_mix))
  return lambda outputs, ab, box: classification(outputs, ab, box, weights)
