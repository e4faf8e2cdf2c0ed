"""Hint points: a user's colours at a few places, as a model input (Zhang et al. 2017's ab map and mask).

A hint is a small square of the canvas painted with one ab colour. The model takes them as `hints`
[B, S, S, 3]: (a, b) / AB_SCALE where a hint is and 0 elsewhere, and a mask channel that is 1 there (so a grey
hint, ab = 0, still says "grey here"). Training simulates them from the truth: `sample` draws the places in the
tf.data pipeline from the content boxes after the flips and zooms (so they always land on the photo, never on
the letterbox bars), `on_device` takes each square's mean true ab from the augmented Lab. Serving paints the
user's points (trainer/export.py). `paint` is the one place squares become the map.
"""
import tensorflow as tf

from pipeline import colour
from trainer import abbins
from trainer.model import AB_SCALE   # hint ab / AB_SCALE lies in [-1, 1] for every sRGB colour

MAX_HINTS = 64       # per training image; geometric counts above it are clipped
P_NONE = 0.5         # share of training images with no hint, so the automatic result keeps its whole budget
P_STOP = 1.0 / 8     # Zhang 2017: the number of hints is geometric with p = 1/8 (mean 8)
DEFAULT_RADIUS = 0.01   # serving: a hint's half side as a share of the photo's long side, when none is given


def max_half(image_size):
  """Training squares have half sides 0 .. image_size / 64 (1x1 to 9x9 at 256 px, as Zhang 2017's patches)."""
  return max(1, image_size // 64)


def sample(box, image_size, p_none=P_NONE, max_hints=MAX_HINTS):
  """Random hint places for content boxes [B, 4] (top, left, height, width): {'hint_yx' int32 [B, K, 2] centres,
  'hint_half' int32 [B, K] half sides, 'hint_valid' bool [B, K]} with K = max_hints.

  Each image has no hint with probability p_none, else 1 + Geometric(P_STOP) of them (at most max_hints), each
  centred uniformly where its square fits inside the content (the content's centre when it does not).
  """
  n = tf.shape(box)[0]
  u = tf.random.uniform([n], 1e-7, 1.0)
  count = 1 + tf.cast(tf.floor(tf.math.log(u) / tf.math.log(1.0 - P_STOP)), tf.int32)
  count = tf.where(tf.random.uniform([n]) < p_none, 0, tf.minimum(count, max_hints))
  valid = tf.range(max_hints)[None, :] < count[:, None]
  half = tf.random.uniform([n, max_hints], 0, max_half(image_size) + 1, dtype=tf.int32)

  def centre(begin, extent):   # [B, K]: uniform over the positions where the square fits, else the middle
    begin, extent = tf.cast(begin, tf.float32)[:, None], tf.cast(extent, tf.float32)[:, None]
    h = tf.cast(half, tf.float32)
    low, room = begin + h, tf.maximum(extent - 2.0 * h - 1.0, 0.0)
    fits = extent > 2.0 * h
    at = tf.where(fits, low + tf.floor(tf.random.uniform(tf.shape(h)) * (room + 1.0)),
                  begin + tf.floor((extent - 1.0) / 2.0))
    return tf.cast(at, tf.int32)

  yx = tf.stack([centre(box[:, 0], box[:, 2]), centre(box[:, 1], box[:, 3])], axis=-1)
  return {'hint_yx': yx, 'hint_half': half, 'hint_valid': valid}


def _square_offsets(half):
  """Offsets [P, P, 2] of the largest square (P = 2 max(half) + 1) and, per hint, which are inside its own."""
  reach = tf.reduce_max(tf.concat([tf.reshape(half, [-1]), [0]], 0))
  steps = tf.range(-reach, reach + 1)
  dy, dx = tf.meshgrid(steps, steps, indexing='ij')
  inside = tf.maximum(tf.abs(dy), tf.abs(dx))[None, None] <= half[..., None, None]   # [B, K, P, P]
  return dy, dx, inside


def paint(image_size, yx, half, ab, valid):
  """The hint map [B, S, S, 3] float32 of squares centred at yx [B, K, 2] (canvas pixels), half sides half [B, K],
  colours ab [B, K, 2] (Lab units); invalid hints are left out. Where squares overlap their colours average."""
  yx, half, valid = tf.cast(yx, tf.int32), tf.cast(half, tf.int32), tf.cast(valid, tf.bool)
  dy, dx, inside = _square_offsets(half)
  y = yx[..., 0, None, None] + dy
  x = yx[..., 1, None, None] + dx
  keep = inside & valid[..., None, None] & (y >= 0) & (y < image_size) & (x >= 0) & (x < image_size)
  b = tf.broadcast_to(tf.range(tf.shape(yx)[0])[:, None, None, None], tf.shape(y))
  index = tf.stack([b, tf.clip_by_value(y, 0, image_size - 1), tf.clip_by_value(x, 0, image_size - 1)], -1)
  weight = tf.cast(keep, tf.float32)[..., None]
  ab = tf.cast(ab, tf.float32)[:, :, None, None, :] / AB_SCALE
  updates = tf.concat([ab * weight, weight], -1)            # [B, K, P, P, 3]: summed, then divided by the count
  total = tf.scatter_nd(tf.reshape(index, [-1, 3]), tf.reshape(updates, [-1, 3]),
                        tf.stack([tf.shape(yx)[0], image_size, image_size, 3]))
  count = total[..., 2:]
  return tf.concat([total[..., :2] / tf.maximum(count, 1.0), tf.cast(count > 0, tf.float32)], -1)


def mean_ab(ab, yx, half):
  """Each hint square's mean of ab [B, S, S, 2] (the truth), clipped to the canvas: [B, K, 2], via an integral
  image, so the cost does not grow with the squares' size."""
  size = tf.shape(ab)[1]
  integral = tf.pad(tf.cumsum(tf.cumsum(tf.cast(ab, tf.float32), 1), 2), [[0, 0], [1, 0], [1, 0], [0, 0]])
  y0 = tf.clip_by_value(yx[..., 0] - half, 0, size)
  y1 = tf.clip_by_value(yx[..., 0] + half + 1, 0, size)
  x0 = tf.clip_by_value(yx[..., 1] - half, 0, size)
  x1 = tf.clip_by_value(yx[..., 1] + half + 1, 0, size)
  b = tf.broadcast_to(tf.range(tf.shape(yx)[0])[:, None], tf.shape(y0))
  at = lambda y, x: tf.gather_nd(integral, tf.stack([b, y, x], -1))
  area = tf.cast(tf.maximum((y1 - y0) * (x1 - x0), 1), tf.float32)[..., None]
  return (at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)) / area


def from_truth(ab, yx, half, valid):
  """The hint map of the sampled squares, each painted with its mean true ab (training and benchmarks)."""
  return paint(ab.shape[1] or tf.shape(ab)[1], yx, half, mean_ab(ab, yx, half), valid)


def none(l):
  """The empty hint map for L canvases [B, S, S, 1]: the automatic colouring."""
  return tf.zeros(tf.concat([tf.shape(l)[:3], [3]], 0), tf.float32)


# ---------------------------------------------------------------- serving: the user's points

MAX_RADIUS = 0.25    # a radius beyond a quarter of the long side is clipped to it (the squares' cost grows as r^2)


def to_canvas(image_size, boxes, points):
  """Points [N, K, 2] (x, y in 0..1 from the photo's left and top edges) -> (canvas pixels yx int32 [N, K, 2],
  valid [N, K]: inside the photo). A point outside 0..1, e.g. (-1, -1), is padding: it is left out."""
  boxes = tf.cast(boxes, tf.float32)[:, None, :]
  x, y = points[..., 0], points[..., 1]
  valid = (x >= 0.0) & (x <= 1.0) & (y >= 0.0) & (y <= 1.0)
  cy = boxes[..., 0] + tf.clip_by_value(tf.floor(y * boxes[..., 2]), 0.0, boxes[..., 2] - 1.0)
  cx = boxes[..., 1] + tf.clip_by_value(tf.floor(x * boxes[..., 3]), 0.0, boxes[..., 3] - 1.0)
  yx = tf.clip_by_value(tf.cast(tf.stack([cy, cx], -1), tf.int32), 0, image_size - 1)
  return yx, valid


def from_user(image_size, boxes, points, colours, radius):
  """The hint map of user hints on letterboxed canvases with content boxes [N, 4]: points [N, K, 2] (x, y in
  0..1 of the photo), colours [N, K, 3] sRGB 0..255, radius [N, K] half side as a share of the photo's long side
  (<= 0: DEFAULT_RADIUS). Only the colour's ab counts: the photo gives the lightness."""
  points, colours, radius = (tf.cast(t, tf.float32) for t in (points, colours, radius))
  yx, valid = to_canvas(image_size, boxes, points)
  long_side = tf.cast(tf.reduce_max(boxes[:, 2:], axis=1), tf.float32)[:, None]
  radius = tf.clip_by_value(tf.where(radius > 0.0, radius, DEFAULT_RADIUS), 0.0, MAX_RADIUS)
  half = tf.cast(tf.round(radius * long_side), tf.int32)
  ab = colour.each_colour(colour.rgb_to_lab, tf.clip_by_value(colours, 0.0, 255.0) / 255.0)[..., 1:]
  return paint(image_size, yx, half, ab, valid)


def suggestions(logits, l_canvas, yx, count=6, spread=25.0):
  """The `count` likeliest distinct colours at canvas points yx [N, M, 2] from bin logits [N, g, g, Q] (the
  model's own distribution, temperature 1): (sRGB uint8 [N, M, count, 3] at the point's lightness, their share
  of the probability [N, M, count]). Greedy: the likeliest bin, then the likeliest more than `spread` Lab units
  from every one taken, each credited with the mass around it that no earlier one took, as a palette should
  offer different colours rather than six shades of one; sorted by that share."""
  size, grid = l_canvas.shape[1], logits.shape[1]
  probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
  n = tf.shape(yx)[0]
  b = tf.broadcast_to(tf.range(n)[:, None], tf.shape(yx)[:2])
  cells = tf.stack([b, yx[..., 0] * grid // size, yx[..., 1] * grid // size], -1)
  p = tf.gather_nd(probs, cells)                                   # [N, M, Q]
  centres = abbins.centres()
  near = tf.constant((((centres[:, None] - centres[None]) ** 2).sum(-1) < spread ** 2).astype('float32'))
  chosen, shares = [], []
  for _ in range(count):
    best = tf.argmax(p, axis=-1)
    around = tf.gather(near, best)                                 # [N, M, Q]
    shares.append(tf.reduce_sum(p * around, -1))
    chosen.append(best)
    p *= 1.0 - around
  shares = tf.stack(shares, -1)
  order = tf.argsort(shares, axis=-1, direction='DESCENDING', stable=True)   # likeliest first, by its mass
  shares = tf.gather(shares, order, batch_dims=2)
  ab = tf.gather(tf.constant(centres), tf.gather(tf.stack(chosen, -1), order, batch_dims=2))   # [N, M, count, 2]
  l = tf.gather_nd(l_canvas[..., 0], tf.stack([b, yx[..., 0], yx[..., 1]], -1))
  lab = tf.concat([tf.broadcast_to(l[..., None, None], tf.shape(ab[..., :1])), ab], -1)
  rgb = tf.cast(tf.round(colour.each_colour(colour.lab_to_rgb, lab) * 255.0), tf.uint8)
  return rgb, shares
