"""The colour-strength control of an export: 0 palest, 0.5 exactly as exported, 1 most vivid, per image."""
import numpy as np
import tensorflow as tf

import serving_model
from trainer import abbins, export


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
  for fmt in ('', '_png'):
    assert _call(f'colorize_hints_strength{fmt}', image_bytes=images, strength=half, **hints) == \
        _call(f'colorize_hints{fmt}', image_bytes=images, **hints)


def _save_distribution(path, size=64):
  """An export of the real graph around a 'network' whose colour distribution is known everywhere: 50 % a
  vivid blue, 30 % grey, 20 % a yellow. Its mean (strength 0) is a dull blue; its mode (strength 1) the vivid one."""
  centres = abbins.centres()
  probs = np.full(len(centres), 1e-6)
  for ab, p in (((10.0, -60.0), 0.5), ((0.0, 0.0), 0.3), ((0.0, 60.0), 0.2)):
    probs[np.argmin(((centres - ab) ** 2).sum(-1))] = p
  logits = tf.constant(np.log(probs / probs.sum()), tf.float32)

  class Distribution(export.ColorizerModule):
    def _forward_fn(self, l, hint_map):
      n, g = tf.shape(l)[0], self._size // 4
      return tf.broadcast_to(logits, [n, g, g, len(centres)]), tf.zeros([n, 1])

  export.save(Distribution(None, None, 'classification', size, takes_hints=False),
              {'image_size': size, 'model': 'distribution', 'loss': 'classification', 'hints': False}, path)
  return tf.saved_model.load(path)


def test_more_strength_gives_more_colour_and_each_image_its_own(tmp_path):
  model = _save_distribution(str(tmp_path / '1'))
  image = _photos()[0]
  strengths = [0.0, 0.25, 0.5, 0.75, 1.0]
  call = lambda images, s: list(model.signatures['colorize_strength_png'](
      image_bytes=tf.constant(images), strength=tf.constant(s, tf.float32))['image_bytes'].numpy())
  outputs = call([image] * 5, strengths)
  chroma = [serving_model.chroma(serving_model.decoded(o)) for o in outputs]
  assert all(a + 1.0 < b for a, b in zip(chroma, chroma[1:])), chroma
  for s, together in zip(strengths, outputs):   # one image's strength does not leak into another's
    assert call([image], [s]) == [together]


def test_the_mapping_is_log_linear_through_the_three_temperatures():
  t = abbins.temperature_of(tf.constant([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0]), 0.38).numpy()
  expected = [1.0, 1.0, np.sqrt(0.38), 0.38, np.sqrt(0.38 * abbins.MIN_TEMPERATURE), abbins.MIN_TEMPERATURE,
              abbins.MIN_TEMPERATURE]
  np.testing.assert_allclose(t, expected, rtol=1e-5)
  assert t[3] == np.float32(0.38)   # exact: the default's bytes stay the export's


def test_mse_exports_and_the_info_say_what_they_offer(tmp_path):
  info = serving_model.colorizer().info
  assert info['colour_strength'] == {'default': 0.5, 'temperatures': [1.0, info['annealed_mean_temperature'],
                                                                      abbins.MIN_TEMPERATURE]}
  serving_model.save_pattern(str(tmp_path / '1'))
  names = list(tf.saved_model.load(str(tmp_path / '1')).signatures)
  assert 'colorize_strength' not in names and 'serving_default' in names
