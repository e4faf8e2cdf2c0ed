import numpy as np
import skimage.color

from pipeline import colour


def _cube(n=33):
  g = np.linspace(0.0, 1.0, n)
  return np.stack(np.meshgrid(g, g, g, indexing='ij'), -1).reshape(-1, 3)


def test_rgb_to_lab_matches_skimage_over_the_srgb_cube():
  rgb = _cube()
  ref = skimage.color.rgb2lab(rgb[None])[0]
  assert np.abs(colour.rgb_to_lab(rgb).numpy() - ref).max() <= 0.05


def test_lab_to_rgb_matches_skimage_and_round_trips():
  rgb = _cube()
  lab = skimage.color.rgb2lab(rgb[None])[0]
  assert np.abs(colour.lab_to_rgb(lab).numpy() - skimage.color.lab2rgb(lab[None])[0]).max() < 1e-3
  # Round trip in Lab units, the contract's unit.
  back = colour.rgb_to_lab(colour.lab_to_rgb(colour.rgb_to_lab(rgb))).numpy()
  assert np.abs(back - lab).max() <= 0.05


def test_known_colours():
  lab = colour.rgb_to_lab(np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0]], np.float32)).numpy()
  np.testing.assert_allclose(lab[0], [0, 0, 0], atol=1e-3)
  np.testing.assert_allclose(lab[1], [100, 0, 0], atol=0.01)
  np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)


def test_grey_rgb_is_the_grey_of_l():
  l = np.array([0.0, 25.0, 50.0, 100.0], np.float32)
  grey = colour.grey_rgb(l).numpy()
  np.testing.assert_allclose(skimage.color.rgb2lab(np.repeat(grey[:, None], 3, -1)[None])[0][:, 0], l, atol=0.05)


def test_each_colours_conversion_is_the_same_wherever_it_sits_and_however_many_are_converted():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (40, 3)).astype(np.float32) / 255.0
  lab = colour.rgb_to_lab(rgb).numpy()
  for convert, colours in ((colour.rgb_to_lab, rgb), (colour.lab_to_rgb, lab)):
    alone = np.concatenate([colour.each_colour(convert, c[None]).numpy() for c in colours])
    for n in (3, 9, 17, 40):
      np.testing.assert_array_equal(colour.each_colour(convert, colours[:n]).numpy(), alone[:n])
      np.testing.assert_array_equal(colour.each_colour(convert, colours[-n:][::-1][None]).numpy()[0],
                                    alone[-n:][::-1])


def test_gradients_are_finite_everywhere():
  import tensorflow as tf
  rgb = tf.constant(_cube(9), tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(rgb)
    loss = tf.reduce_sum(colour.lab_to_rgb(colour.rgb_to_lab(rgb)))
  assert np.isfinite(tape.gradient(loss, rgb).numpy()).all()


def test_lightness_of_8_bit_images_equals_the_float_conversion():
  import tensorflow as tf
  grey = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  want = colour.rgb_to_lab(np.repeat(grey, 3, -1) / 255.0).numpy()[..., 0]
  np.testing.assert_array_equal(colour.lightness_u8(tf.constant(grey)).numpy(), want)   # every grey, exactly
  rgb = (_cube(17) * 255).round().astype(np.uint8).reshape(17, 289, 3)
  want = colour.rgb_to_lab(rgb / 255.0).numpy()[..., 0]
  assert np.abs(colour.lightness_u8(tf.constant(rgb)).numpy() - want).max() < 1e-4


def test_lab_to_8_bit_rgb_equals_rounding_the_float_conversion():
  rng = np.random.default_rng(0)
  lab = np.stack([rng.uniform(0, 100, 200_000), rng.uniform(-120, 120, 200_000), rng.uniform(-120, 120, 200_000)],
                 -1).astype(np.float32)
  lab[:256, 0], lab[:256, 1:] = np.linspace(0, 100, 256), 0   # the greys, and out of gamut (clipped) below
  want = np.round(colour.lab_to_rgb(lab).numpy() * 255.0).astype(int)
  got = colour.lab_to_rgb_u8(lab[:, 0], lab[:, 1:]).numpy().astype(int)
  differ = np.abs(got - want)
  assert differ.max() <= 1 and (differ > 0).mean() < 1e-4   # a level apart only at a threshold, in float noise


def _random_lab(n, seed=0):
  rng = np.random.default_rng(seed)
  lab = np.stack([rng.uniform(0, 100, n), rng.uniform(-120, 120, n), rng.uniform(-120, 120, n)], -1)
  return lab.astype(np.float32)


def test_the_8_bit_encoding_steps_exactly_at_each_threshold():
  # _encode replaces `scaled >= threshold` by a sign; at a threshold, one float below it, and out of range.
  thresholds, _ = colour._encode_tables()
  at = thresholds[:255] * np.float32(colour._ENCODE_BUCKETS)
  below = np.nextafter(at, np.float32(-np.inf))
  got_at, got_below = colour._encode(at).numpy(), colour._encode(below).numpy()
  np.testing.assert_array_equal(got_at, np.arange(1, 256))
  np.testing.assert_array_equal(got_below, np.arange(0, 255))
  np.testing.assert_array_equal(colour._encode(np.float32([-1e30, -1.0, 0.0, 4096.0, 1e30])).numpy(),
                                [0, 0, 0, 255, 255])


def test_the_inverse_f_without_where_equals_the_where():
  import tensorflow as tf
  c = np.concatenate([np.linspace(-2, 2, 100_001), [0.2068966, np.nextafter(np.float32(0.2068966), 1), -1e30, 1e12]])
  c = tf.constant(c, tf.float32)
  want = tf.where(c > 0.2068966, c * c * c, (c - 16.0 / 116.0) / colour._KAPPA).numpy()   # -1e30: the linear side
  np.testing.assert_array_equal(colour._xyz_of_f(c).numpy(), want)


def test_a_grey_photo_in_colour_is_its_lightness_with_the_ab():
  import tensorflow as tf
  rng = np.random.default_rng(1)
  grey = rng.integers(0, 256, (200_000, 1), dtype=np.uint8)
  grey[:256, 0] = np.arange(256)
  ab = _random_lab(200_000, 2)[:, 1:]
  # The grey path takes fy from a table instead of L per pixel: the same bytes as the two functions composed.
  composed = colour.lab_to_rgb_u8(colour.lightness_u8(tf.constant(grey)), ab).numpy()
  np.testing.assert_array_equal(colour.photo_rgb_u8(tf.constant(grey), ab).numpy(), composed)
  # And as the float path, in a graph as serving runs it (Grappler rewrites some arithmetic there).
  for image in (grey, rng.integers(0, 256, (200_000, 3), dtype=np.uint8)):
    lab = colour.rgb_to_lab(np.repeat(image, 3 // image.shape[1], -1) / 255.0).numpy()
    want = np.round(colour.lab_to_rgb(np.concatenate([lab[:, :1], ab], -1)).numpy() * 255.0).astype(int)
    got = tf.function(colour.photo_rgb_u8)(tf.constant(image), tf.constant(ab)).numpy().astype(int)
    differ = np.abs(got - want)
    assert differ.max() <= 1 and (differ > 0).mean() < 1e-4


def test_the_big_endian_fallback_gives_the_same_bytes(monkeypatch):
  import types
  lab = _random_lab(10_000, 3)
  little = colour.lab_to_rgb_u8(lab[:, 0], lab[:, 1:]).numpy()
  monkeypatch.setattr(colour, 'sys', types.SimpleNamespace(byteorder='big'))
  np.testing.assert_array_equal(colour.lab_to_rgb_u8(lab[:, 0], lab[:, 1:]).numpy(), little)
