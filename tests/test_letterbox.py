import numpy as np
import pytest
import tensorflow as tf

from pipeline import letterbox


@pytest.mark.parametrize('h, w, box', [
    (100, 200, [64, 0, 128, 256]),      # wide
    (300, 150, [0, 64, 256, 128]),      # tall
    (1, 1, [0, 0, 256, 256]),           # tiny: upscaled to fill
    (1, 1000, [127, 0, 1, 256]),        # a 1-pixel line keeps at least one row
    (6000, 4000, [0, 42, 256, 171]),    # huge
    (256, 256, [0, 0, 256, 256]),
])
def test_content_box(h, w, box):
  assert letterbox.content_box(h, w, 256).numpy().tolist() == box


@pytest.mark.parametrize('h, w', [(60, 200), (200, 60), (3, 2), (512, 384)])
def test_letterbox_places_content_and_pads_black(h, w):
  image = np.full((h, w, 3), 200, np.uint8)
  canvas, box = letterbox.letterbox(image, 64)
  canvas, (top, left, bh, bw) = canvas.numpy(), box.numpy()
  assert canvas.shape == (64, 64, 3)
  np.testing.assert_allclose(canvas[top:top + bh, left:left + bw], 200, atol=1e-3)
  mask = np.zeros((64, 64), bool)
  mask[top:top + bh, left:left + bw] = True
  assert (canvas[~mask] == 0).all()


def test_unletterbox_recovers_a_smooth_image():
  y, x = np.mgrid[0:120, 0:300].astype(np.float32)
  image = np.stack([x / 3, y / 2, x * 0 + 7], -1)
  canvas, box = letterbox.letterbox(image, 256)
  back = letterbox.unletterbox(canvas, box, 120, 300).numpy()
  assert back.shape == (120, 300, 3)
  assert np.abs(back - image)[2:-2, 2:-2].max() < 1.5


def test_letterbox_in_a_graph_with_unknown_shape():
  f = tf.function(lambda im: letterbox.letterbox(im, 32),
                  input_signature=[tf.TensorSpec([None, None, 1], tf.float32)])
  canvas, box = f(tf.ones([10, 40, 1]))
  assert canvas.shape == (32, 32, 1) and box.numpy().tolist() == [12, 0, 8, 32]
