"""Letterboxing: fit an image into a square canvas without distortion, and undo it.

The longer side is scaled to `size` (small images are upscaled), the result is centred on a zero canvas
(black in both RGB and Lab) and the content box (top, left, height, width) is returned so that losses and
metrics can ignore the padding and serving can cut the prediction back out.
"""
import tensorflow as tf


def content_box(height, width, size):
  """The box [top, left, height, width] (int32) an image of the given size occupies on the canvas."""
  height = tf.cast(height, tf.float64)
  width = tf.cast(width, tf.float64)
  scale = size / tf.maximum(height, width)
  h = tf.clip_by_value(tf.cast(tf.round(height * scale), tf.int32), 1, size)
  w = tf.clip_by_value(tf.cast(tf.round(width * scale), tf.int32), 1, size)
  return tf.stack([(size - h) // 2, (size - w) // 2, h, w])


def letterbox(image, size):
  """image [H, W, C] (any dtype; resized as float32) -> (canvas [size, size, C] float32, box [4] int32)."""
  shape = tf.shape(image)
  box = content_box(shape[0], shape[1], size)
  resized = tf.image.resize(tf.cast(image, tf.float32), box[2:], method='bilinear', antialias=True)
  canvas = tf.pad(resized, [[box[0], size - box[0] - box[2]], [box[1], size - box[1] - box[3]], [0, 0]])
  return tf.ensure_shape(canvas, [size, size, None]), box


def unletterbox(canvas, box, height, width):
  """Cut the content box out of canvas [S, S, C] and resize it to [height, width, C] (float32)."""
  content = canvas[box[0]:box[0] + box[2], box[1]:box[1] + box[3]]
  return tf.image.resize(tf.cast(content, tf.float32), tf.stack([height, width]), method='bilinear')
