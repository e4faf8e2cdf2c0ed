"""Spreading hint colours over the photo: the fixed, weightless interpolation of the serving prior
(model.spread_prior, which the export applies).

A hint says "this colour here"; the pixels around it that are as light as the hinted place are likely the same
surface (Levin et al. 2004's premise: neighbours of similar intensity have similar colours). Each cell of a
coarse grid gets the mean of the hints' colours weighted by a Gaussian of its distance to each hint and of its
lightness difference to the hinted cell (Shepard interpolation in x, y and L), and a confidence that grows with
the total weight: near 1 close to a hint of its lightness, near 0 far from every hint. One batched matmul, no
iterations. The parameters were chosen with benchmarks/spread.py on photos the hints study does not evaluate
on (BUILD_NOTES.md).
"""
import numpy as np
import tensorflow as tf

GRID = 32         # cells per side at most: the weights are [GRID^2, GRID^2] per image (1M at 32)
SIGMA_XY = 0.2    # spatial reach, a share of the canvas side
SIGMA_L = 10.0    # lightness reach, L units (0..100)
HALF = 0.05       # total weight at which the confidence is 1/2 (a hint's own cell has weight 1)


def _spatial(grid):
  """exp(-d^2 / 2 SIGMA_XY^2) between the centres of a grid x grid canvas's cells, [grid^2, grid^2]."""
  centres = (np.arange(grid) + 0.5) / grid
  y, x = [c.reshape(-1) for c in np.meshgrid(centres, centres, indexing='ij')]
  d2 = (y[:, None] - y[None, :]) ** 2 + (x[:, None] - x[None, :]) ** 2
  return np.exp(-d2 / (2 * SIGMA_XY ** 2)).astype(np.float32)


def spread(l, hints):
  """l [B, G, G, 1] each cell's mean L; hints [B, G, G, 3] each cell's mean hint ab (any unit) and a 0/1 flag
  (model._pool_hints) -> (ab [B, G, G, 2] in the hints' unit, confidence [B, G, G, 1] in [0, 1))."""
  grid = l.shape[1]
  n = grid * grid
  l = tf.reshape(tf.cast(l, tf.float32), [-1, n])
  hints = tf.reshape(tf.cast(hints, tf.float32), [-1, n, 3])
  flag = hints[..., 2:]
  # weight[b, i, j]: how much a hint in cell j would say about cell i; the flags pick the cells that have one
  weight = _spatial(grid)[None] * tf.exp(-tf.square(l[:, :, None] - l[:, None, :]) / (2 * SIGMA_L ** 2))
  sums = tf.matmul(weight, tf.concat([hints[..., :2] * flag, flag], -1))     # [B, n, 3]
  total = sums[..., 2:]
  ab = sums[..., :2] / tf.maximum(total, 1e-12)
  return tf.reshape(ab, [-1, grid, grid, 2]), tf.reshape(total / (total + HALF), [-1, grid, grid, 1])
