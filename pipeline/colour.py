"""sRGB (D65) <-> CIE Lab in TensorFlow ops: the project's one colour conversion.

The Beam job, the trainer's metrics and the exported serving graph all call these two functions, so
training and serving cannot drift apart. Constants follow `skimage.color` (the reference in ARCHITECTURE.md):
the sRGB->XYZ matrix, the D65 / 2 degree white point and the 0.008856 / 7.787 linear segment.
"""
import sys

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


# TensorFlow's CPU kernels (Eigen) compute an element-wise op in SIMD packets, and a tensor's last (size mod
# packet size) values one at a time; the vectorised pow differs from the scalar one in the last bit, which Lab's
# differences (500 (fx - fy)) raise to hundreds of ulps. A colour's Lab then depended on its place in the tensor
# and on the tensor's size: a hint's colour changed with the photos and hints that shared its batch.
_WHOLE_PACKETS = 16   # colours: 48 float32 values, whole packets of 16 (AVX-512), 8 (AVX2) or 4 (SSE) values


def each_colour(convert, colours):
  """convert (rgb_to_lab or lab_to_rgb) of colours [..., 3], each colour's result depending on that colour alone,
  not on the other colours in the tensor or their number: padded to whole packets, every value is computed by
  the same (vectorised) code."""
  colours = tf.cast(colours, tf.float32)
  rows = tf.reshape(colours, [-1, 3])
  count = tf.shape(rows)[0]
  padded = tf.pad(rows, [[0, -count % _WHOLE_PACKETS], [0, 0]])
  return tf.reshape(convert(padded)[:count], tf.shape(colours))


# ---------------------------------------------------------------- the same conversions on 8-bit sRGB, fast
# Serving converts whole photos (30 megapixels and more) at their own resolution. There the input is 8-bit and
# the output is rounded to 8 bits, so the sRGB transfer curve, applied per channel, becomes a table of 256
# entries one way and 255 thresholds the other: the same results as the float functions above (up to float
# rounding exactly at a threshold) for a fraction of the work, and L alone costs one channel, not three.
#
# What costs what here (TensorFlow's CPU kernels, op by op on 64k-pixel strips; BUILD_NOTES.md): arithmetic on
# same-shape float vectors is nearly free; table lookups (about 10 ns a pixel; GatherNd cheaper than GatherV2),
# comparisons producing booleans (10-70 x a multiplication), tf.where, and interleaving channels (tf.stack on
# the last axis) are what cost. So: one lookup per pixel and channel and no
# more, no comparisons (a 0/1 step from tf.sign), every vector one channel wide (broadcasting [N, 1] x [3] is
# slow), and the three 8-bit channels packed into one int32 whose bytes are the pixel.

def _srgb_linear(rgb):
  return tf.where(rgb > 0.04045, tf.pow((tf.maximum(rgb, 0.04045) + 0.055) / 1.055, 2.4), rgb / 12.92)


def _lookup(table, index):
  """table[index] for int32 indices of any shape (GatherNd: cheaper than tf.gather per element on CPU)."""
  return tf.gather_nd(table, index[..., None])


def _above(d):
  """1.0 where d > 0, else 0.0, for finite d: as tf.cast(d > 0, tf.float32), without the comparison."""
  return tf.nn.relu(tf.sign(d))


def _select(above, yes, no):
  """tf.where(above == 1, yes, no) for above in {0, 1} and finite yes and no: exact (x * 1 + y * 0 = x)."""
  return yes * above + no * (1.0 - above)


def lightness_u8(image):
  """L (float32 [H, W]) of an 8-bit sRGB image [H, W, 1 or 3] (1: grey), as rgb_to_lab(image / 255)[..., 0]."""
  if image.shape[-1] == 1:   # a grey pixel's L depends on its one value: a table of 256
    return _lookup(_grey_tables()[0], tf.cast(image[..., 0], tf.int32))
  levels = tf.range(256, dtype=tf.float32) / 255.0
  linear = _lookup(_srgb_linear(levels), tf.cast(image, tf.int32))        # [H, W, 3], a table per channel
  y = tf.tensordot(linear, tf.constant(_XYZ_FROM_RGB[1] / _WHITE[1], tf.float32), 1)
  fy = _select(_above(y - _EPS), tf.pow(tf.maximum(y, _EPS), 1.0 / 3.0), _KAPPA * y + 16.0 / 116.0)
  return 116.0 * fy - 16.0


def _grey_tables():
  """(L, fy = (L + 16) / 116) of the 256 greys, each [256] float32."""
  levels = tf.range(256, dtype=tf.float32) / 255.0
  l = rgb_to_lab(tf.stack([levels] * 3, axis=-1))[:, 0]
  return l, (l + 16.0) / 116.0


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


def _xyz_of_f(c):
  """The inverse of Lab's f (X, Y or Z over white from fx, fy or fz), per element, for finite c: tf.where(c >
  0.2068966, c ** 3, (c - 16 / 116) / kappa) as lab_to_rgb computes it (the cube of relu(c) keeps the unused
  branch finite for any finite c, so that 0 x it is 0)."""
  cube = tf.nn.relu(c)
  return _select(_above(c - 0.2068966), cube * cube * cube, (c - 16.0 / 116.0) / _KAPPA)


def _encode(scaled):
  """Linear light x _ENCODE_BUCKETS (finite) -> round(255 x sRGB) clipped to 0 ... 255, as float32: the bucket's
  8-bit value (stored + 1.25) and its threshold in one lookup, then floor(low + 0.5 x sign(scaled - threshold)),
  which is + 1 from the threshold on (scaled >= threshold) without a comparison."""
  thresholds, base = _encode_tables()
  table = tf.constant(np.stack([base.astype(np.float32) + 1.25, thresholds[base] * _ENCODE_BUCKETS], axis=-1))
  low, threshold = tf.unstack(
      _lookup(table, tf.cast(tf.clip_by_value(scaled, 0.0, _ENCODE_BUCKETS - 1), tf.int32)), axis=-1)
  return tf.floor(low + 0.5 * tf.sign(scaled - threshold))


def _rgb_u8_of_fy(fy, ab):
  """fy [...] (Lab's (L + 16) / 116) and ab [..., 2] -> uint8 sRGB [..., 3]. Channel by channel, with the 3 x 3
  matrix written out (a tensordot with 3 inner elements costs more than the rest of the conversion). Linear
  light is computed scaled by the bucket count (a power of two: exact), then encoded by one lookup per channel
  (_encode)."""
  f = (fy + ab[..., 0] / 500.0, fy, tf.maximum(fy - ab[..., 1] / 200.0, 0.0))
  xyz = [_xyz_of_f(c) for c in f]
  matrix = (_RGB_FROM_XYZ * _WHITE[None, :]).astype(np.float32) * np.float32(_ENCODE_BUCKETS)
  channels = [_encode(xyz[0] * row[0] + xyz[1] * row[1] + xyz[2] * row[2]) for row in matrix]
  if sys.byteorder != 'little':
    return tf.cast(tf.stack(channels, axis=-1), tf.uint8)
  # The pixel as one int32 (exact in float32: < 2^24) whose first three bytes are R, G, B: tf.stack on the
  # last axis costs as much here as two lookups.
  word = tf.cast(channels[0] + 256.0 * channels[1] + 65536.0 * channels[2], tf.int32)
  return tf.bitcast(word, tf.uint8)[..., :3]


def lab_to_rgb_u8(l, ab):
  """L [...] and ab [..., 2] -> uint8 sRGB [..., 3], as tf.round(lab_to_rgb(lab) * 255) cast to uint8 (out of
  gamut: clipped), for finite L and ab."""
  l, ab = tf.cast(l, tf.float32), tf.cast(ab, tf.float32)
  return _rgb_u8_of_fy((l + 16.0) / 116.0, ab)


def photo_rgb_u8(image, ab):
  """An 8-bit sRGB photo's own L (image [..., 1 or 3] uint8; 1: grey) with ab [..., 2] -> uint8 sRGB [..., 3]:
  lab_to_rgb_u8(lightness_u8(image), ab), where for a grey photo fy comes straight from a table of 256 (no L
  per pixel)."""
  ab = tf.cast(ab, tf.float32)
  if image.shape[-1] == 1:
    return _rgb_u8_of_fy(_lookup(_grey_tables()[1], tf.cast(image[..., 0], tf.int32)), ab)
  return lab_to_rgb_u8(lightness_u8(image), ab)
