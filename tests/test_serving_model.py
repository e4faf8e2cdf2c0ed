"""The model loader, the input checks and the request batcher, on the real export."""
import os
import re
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

import corpus
import serving_model as sm
from serving import batching, errors, exported, inputs, user_hints
from trainer import abbins


@pytest.fixture(scope='module')
def colorizer():
  return sm.colorizer()


@pytest.fixture(scope='module')
def odd_files(tmp_path_factory):
  return corpus.write(tmp_path_factory.mktemp('corpus'))


def test_export_base_resolves_to_its_highest_version(tmp_path):
  base = tmp_path / 'export'
  version_dir = os.path.join(sm.export_dir(), str(sm.colorizer().version))
  for v in (3, 12):
    shutil.copytree(version_dir, base / str(v))
  (base / '99-partial').mkdir()          # not a version: ignored
  (base / '40').mkdir()                  # no saved_model.pb (an export in progress): ignored
  assert exported.find_version(str(base)) == (str(base / '12'), 12)
  assert exported.find_version(str(base / '3')) == (str(base / '3'), 3)


def test_a_directory_without_a_model_says_what_to_pass(tmp_path):
  with pytest.raises(exported.ModelError, match='trainer.export'):
    exported.Colorizer(str(tmp_path))
  with pytest.raises(exported.ModelError, match='does not exist'):
    exported.Colorizer(str(tmp_path / 'nope'))


def test_model_info_is_read(colorizer):
  assert colorizer.image_size == 256
  assert np.asarray(colorizer.info['ab_histogram']['counts']).shape == (23, 23)


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
@pytest.mark.parametrize('height, width', [(64, 64), (300, 451), (1000, 37)])
def test_output_has_the_inputs_size_and_colour(colorizer, fmt, height, width):
  grey = sm.grey_photo(height, width)
  (out,) = colorizer.colorize([sm.jpeg(grey)], fmt)
  rgb = sm.decoded(out)
  assert rgb.shape == (height, width, 3)
  assert (out[:4] == b'\x89PNG') == (fmt == 'png')
  assert sm.chroma(rgb) > 1.0            # colour, not grey


def test_batch_equals_the_signature_and_isolates_a_bad_image(colorizer):
  good = [sm.jpeg(sm.grey_photo(120, 90)), sm.png(sm.grey_photo(50, 70))]
  direct = colorizer.signature('serving_default')(image_bytes=tf.constant(good))['image_bytes'].numpy()
  results = colorizer.colorize([good[0], b'\xff\xd8 not really a jpeg', good[1]])
  assert isinstance(results[1], errors.BadInput) and 'cannot decode' in str(results[1])
  for got, want in zip([results[0], results[2]], direct):
    np.testing.assert_allclose(sm.decoded(got), sm.decoded(want), atol=2)   # batch of 1 vs 2: float noise


def test_a_photo_gets_the_same_bytes_whichever_photos_share_its_model_call(colorizer):
  """The server batches concurrent requests, so a user's photo shares a model call with other users' photos and
  hints. Its result must be the one it gets alone: hint colours converted in a tensor of another size (more
  photos, more hints) differed in the last bits and moved pixels."""
  rng = np.random.default_rng(0)
  photos = [sm.jpeg(sm.grey_photo(240, 320)), sm.png(sm.grey_photo(200, 150)), sm.jpeg(sm.grey_photo(150, 350))]
  hints = [[user_hints.Hint(float(rng.random()), float(rng.random()), tuple(int(c) for c in rng.integers(0, 256, 3)),
                           float(rng.choice([0.0, 0.02, 0.1]))) for _ in range(count)] for count in (3, 7, 12)]
  for per_photo in (hints, None):   # with hints (padded to the longest list), and the automatic colouring
    together = colorizer.colorize(photos, 'png', per_photo)
    alone = [colorizer.colorize([photo], 'png', per_photo and [per_photo[i]])[0] for i, photo in enumerate(photos)]
    assert together == alone
  # suggest_colours too, asked at each hint (padded to the longest list), where its colour enters the model's
  # distribution.
  at = np.full([len(photos), len(hints[-1]), 2], 0.5, np.float32)
  for i, own in enumerate(hints):
    at[i, :len(own)] = [(h.x, h.y) for h in own]

  def suggest(index, points):
    arrays = user_hints.arrays([hints[i] for i in index])
    return colorizer('suggest_colours', image_bytes=tf.constant([photos[i] for i in index]),
                     **dict(zip(('points', 'colours', 'radius'), map(tf.constant, arrays))), at=tf.constant(points))
  together = suggest(range(len(photos)), at)
  for i, own in enumerate(hints):
    alone = suggest([i], at[i:i + 1, :len(own)])
    for name in ('colours', 'probabilities'):
      np.testing.assert_array_equal(alone[name][0], together[name][i, :len(own)])


def test_plain_grey_jpeg_passes_through_untouched():
  data = sm.jpeg(sm.grey_photo())
  p = inputs.prepare(data)
  assert p.data is data and not p.converted and not p.colour and (p.height, p.width) == (512, 512)


def test_colour_inputs_are_recognised():
  assert inputs.prepare(sm.jpeg(sm.skimage.data.astronaut())).colour
  assert inputs.prepare(sm.png(sm.skimage.data.coffee())).colour
  rgb_grey = np.repeat(sm.grey_photo()[..., None], 3, axis=-1)   # a B&W scan saved as RGB
  assert not inputs.prepare(sm.jpeg(rgb_grey)).colour


@pytest.mark.parametrize('name', ['exif-rotated.jpg', 'cmyk.jpg', 'deep16.png', 'rgba.png', 'animated.gif',
                                  'tiny.bmp'])
def test_odd_formats_are_converted_with_the_pipelines_decoder(colorizer, odd_files, name):
  data = odd_files[name].read_bytes()
  p = inputs.prepare(data)
  rgb, size = inputs.decode.decode(data)
  assert p.converted and (p.height, p.width) == tuple(size) == rgb.shape[:2]
  (out,) = colorizer.colorize([p.data])
  assert sm.decoded(out).shape[:2] == rgb.shape[:2]     # e.g. EXIF rotation applied: 80 x 40, not 40 x 80


@pytest.mark.parametrize('name, message', [('zero-byte.jpg', 'empty'), ('text.JPEG', 'not an image'),
                                           ('truncated.jpg', 'corrupt'), ('bomb.png', 'pixels')])
def test_bad_inputs_are_refused_with_the_reason(odd_files, name, message):
  kind = errors.TooLarge if name == 'bomb.png' else errors.BadInput
  with pytest.raises(errors.ServingError, match=message) as e:
    inputs.prepare(odd_files[name].read_bytes(), max_pixels=10_000_000)
  assert type(e.value) is kind


def test_byte_limit():
  with pytest.raises(errors.TooLarge, match='over the limit of 1000'):
    inputs.prepare(sm.jpeg(sm.grey_photo()), max_bytes=1000)


def test_batcher_batches_concurrent_items_and_keeps_order():
  sizes = []

  def run(items):
    sizes.append(len(items))
    time.sleep(0.05)    # a model call
    return [ValueError(f'bad {i}') if i % 5 == 4 else i * 10 for i in items]

  b = batching.Batcher(run, max_batch=4)
  results = {}

  def client(i):
    try:
      results[i] = b.submit(i).result(timeout=10)
    except ValueError as e:
      results[i] = str(e)

  threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert results == {i: f'bad {i}' if i % 5 == 4 else i * 10 for i in range(10)}
  assert max(sizes) > 1 and max(sizes) <= 4 and sum(sizes) == 10


def test_batcher_survives_a_failing_run():
  b = batching.Batcher(lambda items: 1 / 0)
  with pytest.raises(ZeroDivisionError):
    b.submit(1).result(timeout=10)
  b._run = lambda items: items     # the worker is still alive
  assert b.submit(7).result(timeout=10) == 7


# ---------------------------------------------------------------- the colour strength

@pytest.fixture(scope='module')
def distribution(tmp_path_factory):
  """A model whose colour distribution is known (tests/serving_model.save_distribution): strength shows."""
  base = tmp_path_factory.mktemp('distribution')
  sm.save_distribution(str(base / '1'))
  return exported.Colorizer(str(base))


def test_without_a_strength_the_signatures_of_before_and_at_the_default_their_bytes(colorizer):
  images = [sm.jpeg(sm.grey_photo(120, 90)), sm.png(sm.grey_photo(50, 70))]
  assert colorizer.has_strength and colorizer.default_strength == abbins.DEFAULT_STRENGTH
  for fmt, name in exported.FORMATS.items():
    plain = colorizer.colorize(images, fmt)
    assert plain == list(colorizer.signature(name)(image_bytes=tf.constant(images))['image_bytes'].numpy())
    assert colorizer.colorize(images, fmt, strength=colorizer.default_strength) == plain
    assert colorizer.colorize(images, fmt, strength=[colorizer.default_strength] * 2) == plain


def test_a_strength_per_image_is_the_strength_signatures_and_more_is_more_colourful(colorizer, distribution):
  images = [sm.png(sm.grey_photo(96, 128)), sm.jpeg(sm.grey_photo(50, 70))]
  want = colorizer.signature('colorize_strength_png')(image_bytes=tf.constant(images),
                                                      strength=tf.constant([0.0, 1.0]))['image_bytes'].numpy()
  assert colorizer.colorize(images, 'png', strength=[0.0, 1.0]) == list(want)
  photo = sm.png(sm.grey_photo(96, 128))
  outputs = distribution.colorize([photo] * 3, 'png', strength=np.array([0.0, 0.5, 1.0], np.float32))
  chroma = [sm.chroma(sm.decoded(o)) for o in outputs]
  assert chroma[0] + 1 < chroma[1] < chroma[2] - 1, chroma
  assert outputs[1] == distribution.colorize([photo], 'png')[0]      # the default: the bytes of no strength
  assert distribution.colorize([photo], 'png', strength=1) == outputs[2:]


@pytest.mark.parametrize('strength, message', [
    (1.5, 'strength: 1.5 is not in 0..1'), (-0.1, 'strength: -0.1 is not in 0..1'),
    (float('nan'), 'strength: nan is not in 0..1'), ('0.5', "strength: '0.5' is not in 0..1"),
    ([0.2, float('inf')], 'strength[1]: inf is not in 0..1'), ([0.2], 'strength: 1 values for 2 images'),
    (True, 'strength: True is not in 0..1'),
])
def test_a_bad_strength_is_refused_naming_it(colorizer, strength, message):
  with pytest.raises(errors.BadInput, match=re.escape(message)) as e:
    colorizer.colorize([sm.jpeg(sm.grey_photo(20, 20))] * 2, strength=strength)
  assert '0 (palest' in str(e.value) or 'values for' in str(e.value)


def test_models_without_the_control_refuse_a_strength_and_say_why(tmp_path):
  photo = sm.jpeg(sm.grey_photo(40, 60))
  sm.save_pattern(str(tmp_path / 'mse' / '1'))
  sm.save_distribution(str(tmp_path / 'old' / '1'), strength=False)
  for kind, why in (('mse', 'predicts one colour per pixel'),
                    ('old', 're-export it with python -m trainer.export --job-dir JOB_DIR')):
    model = exported.Colorizer(str(tmp_path / kind))
    assert not model.has_strength and model.default_strength is None
    assert not set(exported.STRENGTH_SIGNATURES) & set(model.signature_names)
    with pytest.raises(errors.Unsupported, match=why) as e:
      model.colorize([photo], strength=0.5)
    assert str(tmp_path / kind) in str(e.value) and 'leave the strength out' in str(e.value)
    (out,) = model.colorize([photo], 'png')              # everything else as before
    assert sm.decoded(out).shape == (40, 60, 3)
    model.warm_up()
  assert 'nothing to make stronger or paler' in str(exported.Colorizer(str(tmp_path / 'mse')).strength_unsupported())
