"""sRGB (D65) <-> CIE Lab in TensorFlow ops: the project's one colour conversion.

The Beam job, the trainer's metrics and the exported serving graph all call these two functions, so
training and serving cannot drift apart. Constants follow `skimage.color` (the reference in DESIGN.md):
the sRGB->XYZ matrix, the D65 / 2 degree white point and the 0.008856 / 7.787 linear segment.
"""
import numpy as np
import tensorflow as tf

_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPS = 0.008856   # (6/29)**3 as skimage rounds it
_KAPPA = 7.787


def rgb_to_lab(rgb):
  """sRGB in [0, 1] (any float dtype, shape [..., 3]) to float32 Lab (L in [0, 100])."""
  rgb = tf.cast(rgb, tf.float32)
  # tf.maximum keeps the unused branch of each tf.where finite, so gradients stay finite too.
  linear = tf.where(rgb > 0.04045, tf.pow((tf.maximum(rgb, 0.04045) + 0.055) / 1.055, 2.4), rgb / 12.92)
  xyz = tf.tensordot(linear, tf.constant((_XYZ_FROM_RGB / _WHITE[:, None]).T, tf.float32), 1)
  f = tf.where(xyz > _EPS, tf.pow(tf.maximum(xyz, _EPS), 1.0 / 3.0), _KAPPA * xyz + 16.0 / 116.0)
  fx, fy, fz = tf.unstack(f, axis=-1)
  return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab):
  """Lab (shape [..., 3]) to sRGB float32 in [0, 1]; out-of-gamut colours are clipped, as skimage does."""
  lab = tf.cast(lab, tf.float32)
  l, a, b = tf.unstack(lab, axis=-1)
  fy = (l + 16.0) / 116.0
  f = tf.stack([fy + a / 500.0, fy, tf.maximum(fy - b / 200.0, 0.0)], axis=-1)
  xyz = tf.where(f > 0.2068966, tf.pow(f, 3.0), (f - 16.0 / 116.0) / _KAPPA)
  linear = tf.tensordot(xyz, tf.constant((_RGB_FROM_XYZ * _WHITE[None, :]).T, tf.float32), 1)
  rgb = tf.where(linear > 0.0031308,
                 1.055 * tf.pow(tf.maximum(linear, 0.0031308), 1.0 / 2.4) - 0.055, 12.92 * linear)
  return tf.clip_by_value(rgb, 0.0, 1.0)


def grey_rgb(l):
  """The sRGB grey [0, 1] a greyscale photo with lightness `l` (shape [...]) shows: lab_to_rgb(l, 0, 0)."""
  l = tf.cast(l, tf.float32)
  return lab_to_rgb(tf.stack([l, tf.zeros_like(l), tf.zeros_like(l)], axis=-1))[..., 0]


# ---------------------------------------------------------------- the same conversions on 8-bit sRGB, fast
# Serving converts whole photos (30 megapixels and more) at their own resolution. There the input is 8-bit and
# the output is rounded to 8 bits, so the sRGB transfer curve, applied per channel, becomes a table of 256
# entries one way and 255 thresholds the other: the same results as the float functions above (up to float
# rounding exactly at a threshold) for a fraction of the work, and L alone costs one channel, not three.

def _srgb_linear(rgb):
  return tf.where(rgb > 0.04045, tf.pow((tf.maximum(rgb, 0.04045) + 0.055) / 1.055, 2.4), rgb / 12.92)


def lightness_u8(image):
  """L (float32 [H, W]) of an 8-bit sRGB image [H, W, 1 or 3] (1: grey), as rgb_to_lab(image / 255)[..., 0]."""
  levels = tf.range(256, dtype=tf.float32) / 255.0
  if image.shape[-1] == 1:   # a grey pixel's L depends on its one value: a table of 256
    table = rgb_to_lab(tf.stack([levels] * 3, axis=-1))[:, 0]
    return tf.gather(table, tf.cast(image[..., 0], tf.int32))
  linear = tf.gather(_srgb_linear(levels), tf.cast(image, tf.int32))        # [H, W, 3], a table per channel
  y = tf.tensordot(linear, tf.constant(_XYZ_FROM_RGB[1] / _WHITE[1], tf.float32), 1)
  fy = tf.where(y > _EPS, tf.pow(tf.maximum(y, _EPS), 1.0 / 3.0), _KAPPA * y + 16.0 / 116.0)
  return 116.0 * fy - 16.0


_ENCODE_BUCKETS = 4096   # finer than the closest two thresholds (3.0e-4 apart, near black): one per bucket at most


def _encode_tables():
  """The linear-light thresholds at which round(255 * sRGB) steps from k to k + 1, and per bucket of
  [0, 1] / _ENCODE_BUCKETS the 8-bit value at its lower edge."""
  v = (np.arange(255) + 0.5) / 255.0
  thresholds = np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
  # The forward curve in float32 decides; nudge each float32 threshold to where it steps from k to k + 1.
  thresholds = thresholds.astype(np.float32)
  edges = np.arange(_ENCODE_BUCKETS, dtype=np.float64) / _ENCODE_BUCKETS
  base = np.searchsorted(thresholds.astype(np.float64), edges, side='right').astype(np.int32)
  return np.append(thresholds, np.float32(np.inf)), base


def lab_to_rgb_u8(l, ab):
  """L [...] and ab [..., 2] -> uint8 sRGB [..., 3], as tf.round(lab_to_rgb(lab) * 255) cast to uint8 (out of
  gamut: clipped). Channel by channel, with the 3 x 3 matrix written out: a tensordot with 3 inner elements
  costs more than the rest of the conversion on large images. Linear light is computed scaled by the bucket
  count (a power of two: exact), and one gather per channel fetches both the bucket's 8-bit value and its
  threshold (gathers are the slow op here: 2 in a row cost 1.7 x this)."""
  l, ab = tf.cast(l, tf.float32), tf.cast(ab, tf.float32)
  fy = (l + 16.0) / 116.0
  f = (fy + ab[..., 0] / 500.0, fy, tf.maximum(fy - ab[..., 1] / 200.0, 0.0))
  xyz = [tf.where(c > 0.2068966, c * c * c, (c - 16.0 / 116.0) / _KAPPA) for c in f]
  matrix = (_RGB_FROM_XYZ * _WHITE[None, :]).astype(np.float32) * np.float32(_ENCODE_BUCKETS)
  thresholds, base = _encode_tables()
  table = tf.constant(np.stack([base.astype(np.float32), thresholds[base] * _ENCODE_BUCKETS], axis=-1))
  channels = []
  for row in matrix:
    scaled = xyz[0] * row[0] + xyz[1] * row[1] + xyz[2] * row[2]     # linear light x _ENCODE_BUCKETS
    low, threshold = tf.unstack(tf.gather(table, tf.cast(tf.clip_by_value(scaled, 0.0, _ENCODE_BUCKETS - 1),
                                                          tf.int32)), axis=-1)
    channels.append(tf.cast(low + tf.cast(scaled >= threshold, tf.float32), tf.uint8))
  return tf.stack(channels, axis=-1)
