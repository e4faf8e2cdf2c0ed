"""The colour-strength control of an export: 0 palest, 0.5 the distribution as trained, 1 most vivid, per image."""
import numpy as np
import tensorflow as tf

import serving_model
from trainer import abbins


def _photos():
  return [serving_model.png(serving_model.grey_photo(96, 128)), serving_model.jpeg(serving_model.grey_photo()[::4, ::4])]


def _call(signature, **inputs):
  return list(serving_model.colorizer().signature(signature)(**inputs)['image_bytes'].numpy())


def test_the_default_strength_gives_the_exported_bytes_with_and_without_hints():
  images = tf.constant(_photos())
  half = tf.constant([abbins.DEFAULT_STRENGTH] * 2)
  assert _call('colorize_strength', image_bytes=images, strength=half) == _call('serving_default', image_bytes=images)
  assert _call('colorize_strength_png', image_bytes=images, strength=half) == _call('colorize_png',
                                                                                    image_bytes=images)
  hints = dict(points=tf.constant([[[0.3, 0.4]], [[0.6, 0.2]]]), colours=tf.constant([[[20.0, 60.0, 200.0]]] * 2),
               radius=tf.constant([[0.05], [0.0]]))
  # With hints, within a level: TensorFlow's graph optimiser (its arithmetic rewrites, measured by turning them
  # off) orders the float additions of the hint prior differently in the two graphs, so a few pixels round the other
  # way. The page and the CLI send no strength at the default, so users get the default signatures' bytes.
  for fmt in ('', '_png'):
    got = _call(f'colorize_hints_strength{fmt}', image_bytes=images, strength=half, **hints)
    want = _call(f'colorize_hints{fmt}', image_bytes=images, **hints)
    for a, b in zip(got, want):
      a, b = serving_model.decoded(a).astype(int), serving_model.decoded(b).astype(int)
      assert a.shape == b.shape and np.abs(a - b).max() <= 1 and (a != b).mean() < 0.001


def test_more_strength_gives_more_colour_and_each_image_its_own(tmp_path):
  serving_model.save_distribution(str(tmp_path / '1'))
  model = tf.saved_model.load(str(tmp_path / '1'))
  image = _photos()[0]
  strengths = [0.0, 0.25, 0.5, 0.75, 1.0]
  call = lambda images, s: list(model.signatures['colorize_strength_png'](
      image_bytes=tf.constant(images), strength=tf.constant(s, tf.float32))['image_bytes'].numpy())
  outputs = call([image] * 5, strengths)
  chroma = [serving_model.chroma(serving_model.decoded(o)) for o in outputs]
  assert all(a + 1.0 < b for a, b in zip(chroma, chroma[1:])), chroma
  for s, together in zip(strengths, outputs):   # one image's strength does not leak into another's
    assert call([image], [s]) == [together]


def test_the_strength_moves_rebalancing_below_half_and_temperature_above():
  """Against the two knobs set by hand: at s < 0.5 the logits lose (1 - 2s) log w at the run's temperature; at
  s > 0.5 the temperature falls log-linearly to MIN_TEMPERATURE; 0.5 is the logits as trained, exactly."""
  rng = np.random.default_rng(0)
  logits = tf.constant(rng.normal(0.0, 2.0, (5, 3, 3, abbins.num_bins())), tf.float32)
  log_w = rng.normal(0.0, 0.5, abbins.num_bins())
  decoding = abbins.Decoding(0.38, 0.5, tuple(log_w))
  strengths = tf.constant([0.0, 0.25, 0.5, 0.75, 1.0])
  got = decoding.ab(logits, strengths).numpy()
  by_hand = [abbins.annealed_mean(logits[0:1] - 1.0 * log_w, 0.38), abbins.annealed_mean(logits[1:2] - 0.5 * log_w, 0.38),
             abbins.annealed_mean(logits[2:3], 0.38), abbins.annealed_mean(logits[3:4], np.sqrt(0.38 * 0.05)),
             abbins.annealed_mean(logits[4:5], abbins.MIN_TEMPERATURE)]
  np.testing.assert_allclose(got, np.concatenate(by_hand), atol=1e-4)
  assert (decoding.ab(logits[2:3]).numpy() == abbins.annealed_mean(logits[2:3], 0.38).numpy()).all()   # exact
  clipped = decoding.ab(tf.gather(logits, [0, 4]), tf.constant([-1.0, 2.0])).numpy()
  np.testing.assert_allclose(clipped, np.concatenate([by_hand[0], by_hand[4]]), atol=1e-4)


def test_mse_exports_and_the_info_say_what_they_offer(tmp_path):
  info = serving_model.colorizer().info
  assert info['colour_strength'] == abbins.DEFAULT_STRENGTH and info['annealed_mean_temperature'] == 0.38
  serving_model.save_pattern(str(tmp_path / '1'))
  names = list(tf.saved_model.load(str(tmp_path / '1')).signatures)
  assert 'colorize_strength' not in names and 'serving_default' in names
