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
