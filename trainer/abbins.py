"""Quantised ab space for the classification loss (Zhang et al. 2016, "Colorful Image Colorization").

The bins are the cells of pipeline.schema's ab histogram grid (10 Lab units, centred on -110 ... 110) that some
8-bit sRGB colour falls in, derived once per process from the sRGB cube through pipeline.colour, the project's
one colour conversion. With that conversion the count is 261, not the paper's 313: the published set
(pts_in_hull.npy) also holds cells that no sRGB colour reaches (its a = 100 row runs up to b = 0, sRGB's stops at
b = -50), so it cannot be re-derived from sRGB. Every colour a record or a photo can hold has a bin here.

Targets are soft-encoded over the 5 nearest bins with a Gaussian kernel (sigma 5), pixels are weighted by the
class-rebalancing weight of their nearest bin, and predictions are decoded with the annealed mean (T = 0.38).
"""
import dataclasses
import functools
import math

import numpy as np
import scipy.ndimage
import tensorflow as tf

from pipeline import colour, schema

NEIGHBOURS = 5
SIGMA = 5.0          # Lab units, for both the soft encoding and the prior's smoothing
GAMMA = 0.5          # mix of the smoothed prior and the uniform distribution in the rebalancing weights
TEMPERATURE = 0.38   # annealed mean

_GRID = schema.AB_HIST_BINS
# Cell i of schema's grid covers [AB_HIST_MIN + 10 i, AB_HIST_MIN + 10 (i + 1)), centred on -110 + 10 i.
CELL_CENTRES = schema.AB_HIST_MIN + schema.AB_HIST_BIN * (np.arange(_GRID) + 0.5)


def _cube_faces():
  """float32 [6 * 256 * 256, 3]: the 8-bit sRGB colours on the six faces of the RGB cube, in [0, 1]."""
  levels = tf.range(256, dtype=tf.float32) / 255.0
  u, v = (tf.reshape(t, [-1]) for t in tf.meshgrid(levels, levels, indexing='ij'))
  faces = []
  for axis in range(3):
    for value in (0.0, 1.0):
      columns = [u, v]
      columns.insert(axis, tf.fill(tf.shape(u), value))
      faces.append(tf.stack(columns, axis=-1))
  return tf.concat(faces, axis=0)


def _grid_hit(rgb):
  """bool [23, 23]: the histogram cells the colours rgb [N, 3] fall in."""
  cells = schema.ab_cells(colour.rgb_to_lab(rgb)[..., 1:]).numpy()
  hit = np.zeros((_GRID, _GRID), bool)
  hit[cells[:, 0], cells[:, 1]] = True
  return hit


@functools.cache
def in_gamut_grid():
  """bool [23, 23]: the histogram cells (axis 0 a, axis 1 b) that some 8-bit sRGB colour falls in.

  The colours on the faces of the RGB cube suffice (0.1 s instead of 3 s for all 16.7 M): every vertical line
  (fixed ab, varying L) through the Lab colour solid leaves it through its surface, the image of the cube's
  faces, so the solid's ab shadow is theirs. The tests check the result against the whole cube.
  """
  return _grid_hit(_cube_faces())


@functools.cache
def centres():
  """float32 [Q, 2]: the ab centres of the in-gamut bins, in row-major grid order (Q = 261)."""
  a, b = np.meshgrid(CELL_CENTRES, CELL_CENTRES, indexing='ij')
  mask = in_gamut_grid()
  return np.stack([a[mask], b[mask]], axis=-1).astype(np.float32)


def num_bins():
  return len(centres())


def rebalance_weights_grid(histogram_counts, mix=GAMMA):
  """Class-rebalancing weights [23, 23] per histogram cell from the training split's ab histogram.

  w = ((1 - mix) p + mix / Q) ** -1 with p the empirical ab distribution over the in-gamut bins, smoothed
  with a Gaussian of sigma 5 Lab units, and w scaled so that its expectation under p is 1. Cells out of gamut
  get 0. An empty histogram gives uniform weights.
  """
  counts = np.asarray(histogram_counts, np.float64)
  if counts.shape != (_GRID, _GRID):
    raise ValueError(f'the ab histogram must be {_GRID} x {_GRID} (pipeline.schema AB_HIST_BINS), '
                     f'got {counts.shape}')
  mask = in_gamut_grid()
  smoothed = scipy.ndimage.gaussian_filter(counts, sigma=SIGMA / schema.AB_HIST_BIN, mode='constant') * mask
  q = mask.sum()
  p = smoothed / smoothed.sum() if smoothed.sum() > 0 else mask / q
  w = np.where(mask, 1.0 / ((1.0 - mix) * p + mix / q), 0.0)
  return (w / (p * w).sum()).astype(np.float32)


def rebalance_weights(histogram_counts, mix=GAMMA):
  """float32 [Q]: rebalance_weights_grid at the in-gamut bins, in centres() order."""
  return rebalance_weights_grid(histogram_counts, mix)[in_gamut_grid()]


def soft_encode(ab):
  """ab [..., 2] -> (soft targets [..., Q], index of the nearest bin [...]).

  Each pixel spreads over its NEIGHBOURS nearest bins with Gaussian weights (sigma SIGMA) that sum to 1.
  """
  d2 = tf.reduce_sum(tf.square(tf.cast(ab, tf.float32)[..., None, :] - centres()), axis=-1)
  flat = tf.reshape(d2, [-1, num_bins()])
  neg, bins = tf.math.top_k(-flat, k=NEIGHBOURS)               # nearest first
  weights = tf.exp((neg - neg[:, :1]) / (2.0 * SIGMA ** 2))    # relative to the nearest: no underflow
  weights /= tf.reduce_sum(weights, axis=-1, keepdims=True)
  # Scattered into [N, Q] directly: k one-hot rows per pixel would take k times the memory.
  rows = tf.broadcast_to(tf.range(tf.shape(flat)[0])[:, None], tf.shape(bins))
  soft = tf.scatter_nd(tf.stack([rows, bins], axis=-1), weights, tf.shape(flat))
  return tf.reshape(soft, tf.shape(d2)), tf.reshape(bins[:, 0], tf.shape(d2)[:-1])


def annealed_mean(logits, temperature=TEMPERATURE):
  """Bin logits [..., Q] -> ab [..., 2]: the mean of softmax(logits / T) over the bin centres (T: a number, or a
  tensor that broadcasts against the logits)."""
  probs = tf.nn.softmax(tf.cast(logits, tf.float32) / temperature, axis=-1)
  return tf.tensordot(probs, tf.constant(centres()), axes=1)



# ---------------------------------------------------------------- colour strength

# The colour strength s (0..1) moves along the front between accuracy and colour that the two knobs of the
# decoding trace (BENCHMARKS.md, Quality: the colour-strength front): below 0.5 it keeps a share 2s of the class
# rebalancing the model was trained with (logits - (1 - 2s) log w, Menon et al.'s logit adjustment: at 0 each
# colour is predicted as often as it occurs, the most accurate and palest); at 0.5 the distribution is exactly as
# trained at the run's temperature; above it the temperature falls log-linearly to MIN_TEMPERATURE at 1 (close
# to the mode: the most vivid). The default is the front's most colourful setting within 0.5 dB of its best PSNR
# (benchmarks/strength.py on the default recipe: 0.25, at grey's PSNR + 0.3 dB with 57 % of the truth's colour).
DEFAULT_STRENGTH = 0.25
MIN_TEMPERATURE = 0.05


@dataclasses.dataclass(frozen=True)
class Decoding:
  """How a classification model's bin logits become ab: at a colour strength, per image or this default."""
  temperature: float = TEMPERATURE    # the annealed mean's at strength 0.5 (the run's --temperature)
  strength: float = DEFAULT_STRENGTH  # when none is given
  log_weights: tuple = None           # log of the rebalancing weights the model was trained with [Q]; None: none

  @classmethod
  def of_training(cls, histogram_counts, rebalance_mix, temperature=TEMPERATURE, strength=DEFAULT_STRENGTH):
    """The decoding of a model trained on this ab histogram with this --rebalance-mix."""
    log_w = np.log(rebalance_weights(histogram_counts, rebalance_mix))
    return cls(float(temperature), float(strength), tuple(float(v) for v in log_w))

  def knobs(self, strength):
    """(alpha, temperature) of a strength 0..1 (numbers or tensors): the share of the training's rebalancing kept,
    and the annealed mean's temperature."""
    minimum, exp, log, where = ((min, math.exp, math.log, lambda c, a, b: a if c else b)
                                if isinstance(strength, (int, float)) else
                                (tf.minimum, tf.exp, lambda v: tf.constant(math.log(v)), tf.where))
    t = float(self.temperature)
    cooler = exp(log(t) + (2.0 * strength - 1.0) * (math.log(MIN_TEMPERATURE) - math.log(t)))
    return minimum(2.0 * strength, 1.0), where(strength <= 0.5, t, cooler)

  def ab(self, logits, strength=None):
    """Bin logits [B, ..., Q] -> ab [B, ..., 2]; strength: colour strengths [B] (clipped to 0..1), None: the
    default. The default is decoded with fixed knobs (as the export decoded before the strength existed: the same
    bytes) and an image given the default strength gets that, whatever its batch companions ask for (with hints
    within a level: TF's graph optimiser orders the hint prior's float additions differently in the two graphs)."""
    logits = tf.cast(logits, tf.float32)
    fixed = self._decode(logits, *self.knobs(float(self.strength)))
    if strength is None:
      return fixed
    per_image = lambda v: tf.reshape(v, [-1] + [1] * (logits.shape.rank - 1))
    s = tf.clip_by_value(tf.cast(strength, tf.float32), 0.0, 1.0)
    alpha, t = self.knobs(s)
    return tf.where(per_image(s == float(self.strength)), fixed, self._decode(logits, per_image(alpha), per_image(t)))

  def _decode(self, logits, alpha, temperature):
    if self.log_weights is not None and not (isinstance(alpha, float) and alpha == 1.0):
      logits -= (1.0 - alpha) * tf.constant(self.log_weights, tf.float32)
    return annealed_mean(logits, temperature)
