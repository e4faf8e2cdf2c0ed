"""Hint points: sampled inside the photo after the augmentation, painted with the truth, taken by every
model, trained under each strategy and precision, exported, and followed where the user put them."""
import json

import numpy as np
import pytest
import tensorflow as tf

import serving_model as sm
from serving import colorize, errors as serving_errors, evaluate, exported as serving_model, user_hints as serving_hints
from trainer import config, data, export, hints, jobdir, model as model_lib, propagate, runinfo, task

SIZE = 64


@pytest.fixture(scope='module')
def records(make_records):
  return make_records('--image-size', str(SIZE), '--num-shards', '1', '--embedder', 'mobilenet_v2',
                      '--embedder-weights', 'random', '--runner', 'DirectRunner')


def _config(records, job_dir, **kw):
  return config.Config(data=str(records), job_dir=str(job_dir), **dict(
      dict(epochs=1, steps_per_epoch=2, batch_size=4, width=0.25, strategy='one_device', val_images=0,
           sample_images=0, export=False, hints=True), **kw))


def _reference_map(size, yx, half, ab, valid):
  """paint() in plain numpy, square by square."""
  total = np.zeros([len(yx), size, size, 3])
  for b in range(len(yx)):
    for k in range(len(yx[b])):
      if valid[b, k]:
        y, x, h = yx[b, k, 0], yx[b, k, 1], half[b, k]
        square = total[b, max(0, y - h):max(0, y + h + 1), max(0, x - h):max(0, x + h + 1)]
        square[..., :2] += ab[b, k] / model_lib.AB_SCALE
        square[..., 2] += 1
  count = total[..., 2:]
  return np.concatenate([total[..., :2] / np.maximum(count, 1), count > 0], -1)


def test_paint_and_the_truths_mean_match_a_plain_reference():
  rng = np.random.default_rng(0)
  yx = rng.integers(-2, SIZE + 2, (3, 9, 2)).astype(np.int32)      # some partly off the canvas
  half = rng.integers(0, 4, (3, 9)).astype(np.int32)
  valid = rng.uniform(size=(3, 9)) < 0.7
  ab = rng.uniform(-80, 80, (3, 9, 2)).astype(np.float32)
  np.testing.assert_allclose(hints.paint(SIZE, yx, half, ab, valid), _reference_map(SIZE, yx, half, ab, valid),
                             atol=1e-6)
  truth = rng.uniform(-60, 60, (3, SIZE, SIZE, 2)).astype(np.float32)
  means = hints.mean_ab(tf.constant(truth), tf.constant(yx), tf.constant(half)).numpy()
  for b, k in [(0, 0), (1, 4), (2, 8)]:
    (y, x), h = yx[b, k], half[b, k]
    square = truth[b, max(0, y - h):max(0, y + h + 1), max(0, x - h):max(0, x + h + 1)]
    if square.size:
      np.testing.assert_allclose(means[b, k], square.reshape(-1, 2).mean(0), atol=1e-3)


def test_sampled_squares_lie_inside_the_content_and_half_the_images_have_none():
  boxes = tf.constant([[16, 0, 32, 64], [0, 20, 64, 24], [30, 30, 4, 3]] * 200, tf.int32)
  s = {k: v.numpy() for k, v in hints.sample(boxes, SIZE).items()}
  count = s['hint_valid'].sum(1)
  assert 0.4 < (count == 0).mean() < 0.6
  assert count.max() <= hints.MAX_HINTS and 5 < count[count > 0].mean() < 12     # 1 + Geometric(1/8): mean 8
  assert s['hint_half'].max() == hints.max_half(SIZE)
  for b, k in zip(*np.nonzero(s['hint_valid'])):
    t, l, h, w = boxes[b].numpy()
    y, x, r = s['hint_yx'][b, k, 0], s['hint_yx'][b, k, 1], s['hint_half'][b, k]
    assert t <= y < t + h and l <= x < l + w
    if h > 2 * r and w > 2 * r:
      assert t <= y - r and y + r < t + h and l <= x - r and x + r < l + w


def test_training_hints_follow_the_flips_and_zooms_and_carry_the_augmented_truth(records):
  meta = data.load_metadata(str(records))
  ds = data.dataset(data.shards(str(records), 'train', meta), meta, 8, training=True, zoom=0.6, hints=True)
  batch = next(iter(ds))
  assert batch['hint_valid'].numpy().any()
  x, y = data.on_device(batch)
  mask = x['hints'][..., 2].numpy() > 0
  box = y['box'].numpy()
  inside = np.zeros_like(mask)
  for b, (t, l, h, w) in enumerate(box):
    inside[b, t:t + h, l:l + w] = True
  assert mask.any() and not (mask & ~inside).any()      # never on the letterbox bars, after flip and zoom
  # A hint's colour is the mean of the augmented truth over its square.
  yx, half, valid = (batch[k].numpy() for k in ('hint_yx', 'hint_half', 'hint_valid'))
  b, k = next(zip(*np.nonzero(valid)))
  (cy, cx), h = yx[b, k], half[b, k]
  alone = mask[b, cy - h - 1:cy + h + 2, cx - h - 1:cx + h + 2]
  if alone.sum() == (2 * h + 1) ** 2:   # no other square overlaps this one
    expected = y['ab'].numpy()[b, cy - h:cy + h + 1, cx - h:cx + h + 1].reshape(-1, 2).mean(0)
    np.testing.assert_allclose(x['hints'].numpy()[b, cy, cx, :2] * model_lib.AB_SCALE, expected, atol=1e-3)


@pytest.mark.parametrize('model,loss', [('unet', 'classification'), ('fusion', 'mse'), ('beta', 'classification')])
def test_every_model_takes_hints_and_they_change_the_output(model, loss):
  net = model_lib.build(model, loss, SIZE, 1000, 0.25, encoder_weights='random', hints=True)
  assert model_lib.takes_hints(net)
  rng = np.random.default_rng(1)
  batch = {'l': tf.constant(rng.uniform(0, 100, (1, SIZE, SIZE, 1)), tf.float32),
           'embedding': tf.fill([1, 1000], 1e-3), 'hints': hints.none(tf.zeros([1, SIZE, SIZE, 1]))}
  plain = net(model_lib.features(net, batch))
  batch['hints'] = hints.paint(SIZE, [[[32, 32]]], [[2]], [[[60.0, -40.0]]], [[True]])
  assert not np.allclose(plain, net(model_lib.features(net, batch)))


@pytest.mark.parametrize('loss', model_lib.LOSSES)
def test_even_an_untrained_model_gives_the_hints_colour_where_it_is_and_serving_spreads_it(loss):
  """The model's own prior: the place the user chose gets the chosen colour from the first step on. The export's
  spread prior: the part of the photo as light as it (the right half here) gets it too; the darker left half
  keeps the network's own guess."""
  net = model_lib.build('unet', loss, SIZE, 1000, 0.25, encoder_weights='random', hints=True)
  hint_map = hints.paint(SIZE, [[[20, 40]]], [[2]], [[[60.0, -40.0]]], [[True]])
  l = np.full([1, SIZE, SIZE, 1], 70.0, np.float32)
  l[:, :, :SIZE // 2] = 20.0
  outputs = net({'l': tf.constant(l), 'embedding': tf.fill([1, 1000], 1e-3), 'hints': hint_map})
  ab = model_lib.predict_ab(outputs, loss, SIZE).numpy()
  np.testing.assert_allclose(ab[0, 20, 40], [60.0, -40.0], atol=0.5)
  assert np.abs(ab[0, 44, 52] - [60.0, -40.0]).max() > 20              # away from it: the network's own guess
  spread = model_lib.predict_ab(model_lib.spread_prior(outputs, hint_map, l, SIZE), loss, SIZE).numpy()
  np.testing.assert_allclose(spread[0, 20, 40], [60.0, -40.0], atol=0.5)
  np.testing.assert_allclose(spread[0, 44, 52], [60.0, -40.0], atol=3.0)   # 24 px away, as light: spread
  np.testing.assert_allclose(spread[0, :, :24], ab[0, :, :24], atol=3.0)  # darker: (all but) unchanged
  assert np.abs(spread[0, 44, 8] - [60.0, -40.0]).max() > 20
  none = model_lib.spread_prior(outputs, hints.none(tf.constant(l)), l, SIZE)
  np.testing.assert_array_equal(none.numpy(), tf.cast(outputs, tf.float32).numpy())   # no hint: no change


def test_spread_follows_lightness_and_distance():
  """propagate.spread on a 16 x 16 grid: a hint colours the cells as light as its own, nearer ones more surely,
  and says nothing (confidence 0) where there is no hint at all."""
  grid = 16
  l = np.full([2, grid, grid, 1], 80.0, np.float32)
  l[:, :, :4] = 10.0                                         # a dark band on the left
  told = np.zeros([2, grid, grid, 3], np.float32)
  told[0, 8, 12] = [0.5, -0.25, 1.0]                         # image 0: one hint on the light part; image 1: none
  told[0, 2, 2] = [-0.5, 0.5, 1.0]                           # and one in the dark band
  ab, confidence = [t.numpy() for t in propagate.spread(tf.constant(l), tf.constant(told))]
  np.testing.assert_allclose(ab[0, 10, 6], [0.5, -0.25], atol=1e-3)     # light cells take the light hint's colour
  np.testing.assert_allclose(ab[0, 14, 1], [-0.5, 0.5], atol=1e-3)      # dark cells the dark one's
  assert confidence[0, 8, 11, 0] > confidence[0, 8, 5, 0] > confidence[0, 0, 15, 0]   # 1, 7, 8.5 cells away
  assert confidence[0, 8, 11, 0] > 0.9
  np.testing.assert_array_equal(confidence[1], 0.0)


def test_trains_with_hints_on_two_replicas_in_float16_and_resumes_only_with_them(records, tmp_path):
  job = tmp_path / 'job'
  result = task.train(_config(records, job, strategy='mirrored', precision='mixed_float16', batch_size=2))
  assert result['step'] == 2 and np.isfinite(result['loss'])
  assert runinfo.read(jobdir.paths(str(job)))['config']['hints'] is True
  with pytest.raises(jobdir.RunError, match='hints: True there, False now'):
    task.train(_config(records, job, strategy='mirrored', precision='mixed_float16', batch_size=2, hints=False))


def test_a_run_json_from_before_hints_resumes_without_them(records, tmp_path):
  job = tmp_path / 'job'
  task.train(_config(records, job, hints=False, model='beta'))
  p = jobdir.paths(str(job))
  run = runinfo.read(p)
  # Flat, as trainer.task wrote run.json then: the config's keys beside the facts, and no 'hints'.
  flat = {key: value for key, value in run['config'].items() if key not in ('encoder', 'hints')}
  flat.update({key: value for key, value in run.items() if key != 'config'}, output_stride=None, fine_tune_from=None)
  with open(p.run_file, 'w') as f:
    json.dump(flat, f)
  assert task.train(_config(records, job, hints=False, model='beta', epochs=2))['step'] == 4


# ---------------------------------------------------------------- serving: the hint lands where it was put

@pytest.fixture(scope='module')
def pattern(tmp_path_factory):
  """The real export graph around a 'network' that paints each hint's colour exactly on its square."""
  path = tmp_path_factory.mktemp('pattern-hints') / '1'
  sm.save_pattern(str(path), size=64, hints=True)
  return serving_model.Colorizer(str(path))


@pytest.mark.parametrize('height,width', [(300, 500), (500, 300), (64, 64)])
def test_a_hint_colours_the_photo_where_the_user_put_it(pattern, height, width):
  grey = np.full((height, width), 140, np.uint8)
  # Where the pattern is cyan and yellow-green: the hints' hues differ from what is there without them.
  red, blue = serving_hints.make(0.75, 0.75, '#c03020'), serving_hints.make(0.8, 0.1, '#2050d0', radius=0.05)
  (out,) = pattern.colorize([sm.png(grey)], 'png', [[red, blue]])
  rgb = sm.decoded(out).astype(int)
  assert rgb.shape == (height, width, 3)
  for hint, channel in ((red, 0), (blue, 2)):
    pixel = rgb[int(hint.y * height), int(hint.x * width)]
    assert pixel.argmax() == channel, (hint, pixel)             # the hint's hue, at its place in the photo
  (plain,) = pattern.colorize([sm.png(grey)], 'png')
  far = (int(0.5 * height), int(0.5 * width))
  np.testing.assert_array_equal(sm.decoded(plain)[far], rgb[far])   # away from the hints: the automatic colour


def test_padding_points_and_an_empty_list_are_the_automatic_result(pattern):
  photo = sm.png(np.full((80, 120), 100, np.uint8))
  automatic, empty = pattern.colorize([photo, photo], 'png', [[], []])
  (hinted,) = pattern.colorize([photo], 'png', [[serving_hints.make(0.5, 0.5, '#00ff00')]])
  assert automatic == empty and hinted != automatic
  padded = pattern('colorize_hints_png', image_bytes=tf.constant([photo]), points=tf.constant([[[-1.0, -1.0]]]),
                   colours=tf.constant([[[0.0, 255.0, 0.0]]]), radius=tf.constant([[0.0]]))['image_bytes'][0]
  assert padded == automatic


def test_a_photos_hint_map_is_the_same_alone_as_in_a_batch_with_more_photos_and_hints():
  """The server puts concurrent users' photos in one model call, their hints padded to the longest list. A
  photo's hint map must be the one it has alone: its colours converted in a tensor of another size differed in
  the last bits (which moved pixels of the coloured photo)."""
  rng = np.random.default_rng(0)
  per_photo = [[serving_hints.Hint(*rng.uniform(0, 1, 2), tuple(int(c) for c in rng.integers(0, 256, 3)), 0.05)
                for _ in range(count)] for count in (1, 2, 5, 9)]
  boxes = tf.constant([[0, 0, SIZE, SIZE]] * len(per_photo))
  together = hints.from_user(SIZE, boxes, *serving_hints.arrays(per_photo)).numpy()
  for i, own in enumerate(per_photo):
    alone = hints.from_user(SIZE, boxes[:1], *serving_hints.arrays([own])).numpy()
    np.testing.assert_array_equal(alone[0], together[i])


def test_the_export_spreads_a_hint_over_the_surface_it_is_on():
  """A trained (two-step) export: a blue hint on the dark half of a photo turns that half blue well away from
  the hint (the network alone, two steps in, colours only the hint's square); the light half keeps the
  automatic colours."""
  from skimage import color
  colorizer = sm.colorizer()
  grey = np.full((96, 128), 60, np.uint8)
  grey[:, :64] = 200
  (auto,) = colorizer.colorize([sm.png(grey)], 'png')
  (hinted,) = colorizer.colorize([sm.png(grey)], 'png', [[serving_hints.make(0.9, 0.5, '#2050d0')]])
  auto, hinted = (color.rgb2lab(sm.decoded(x)) for x in (auto, hinted))
  assert hinted[30, 80, 2] < auto[30, 80, 2] - 15        # 39 px from the hint, as dark: blue (b < 0)
  assert hinted[30, 80, 2] < -15
  # the light half keeps the automatic colours (but where the network's own use of the hint reaches)
  assert np.median(np.abs(hinted[:, :56] - auto[:, :56])) < 0.5


def test_suggested_colours_are_distinct_and_from_the_models_distribution():
  colorizer = sm.colorizer()
  assert colorizer.takes_hints and colorizer.suggests
  photo = sm.jpeg(sm.grey_photo(120, 160))
  (palette, other) = colorizer.suggest(photo, [(0.3, 0.4), (0.9, 0.9)])
  assert len(palette) == 6 and all(len(rgb) == 3 for rgb, _ in palette)
  probabilities = [p for _, p in palette]
  assert probabilities[0] > 0 and sum(probabilities) <= 1.0 + 1e-5 and probabilities == sorted(probabilities)[::-1]
  assert len({rgb for rgb, _ in palette}) == 6


def test_cli_hints_and_hints_file(pattern, tmp_path):
  photos = tmp_path / 'in'
  photos.mkdir()
  (photos / 'a.png').write_bytes(sm.png(np.full((60, 90), 120, np.uint8)))
  (photos / 'b.png').write_bytes(sm.png(np.full((60, 90), 120, np.uint8)))
  hints_file = tmp_path / 'hints.json'
  hints_file.write_text(json.dumps({'b.png': [{'x': 0.9, 'y': 0.9, 'colour': '#e0e000'}]}))
  every, per_file = colorize.read_hints_file(str(hints_file))
  every += [serving_hints.parse_cli('0.1,0.1,#0000ff')]   # where the pattern is orange
  report = colorize.run(pattern, [str(photos)], str(tmp_path / 'out'), 'png', progress=False,
                        hints=colorize.hints_for(every, per_file))
  assert not report.failed
  a, b = (sm.decoded((tmp_path / 'out' / n).read_bytes()).astype(int) for n in ('a.png', 'b.png'))
  assert a[6, 9].argmax() == 2 and b[6, 9].argmax() == 2          # --hint: on every input
  assert b[54, 81].argmin() == 2 and a[54, 81].argmin() != 2      # the file's yellow: on b only (a: cyan)


@pytest.mark.parametrize('text,message', [
    ('0.5,1.2,#ff0000', 'outside the photo'), ('0.5,0.5,#ff00', 'is not #RRGGBB'), ('0.5,0.5', 'expected X,Y'),
    ('a,0.5,#ff0000', 'must be numbers'), ('0.5,0.5,#ff0000,0.9', 'radius 0.9')])
def test_malformed_cli_hints_are_named(text, message):
  with pytest.raises(serving_hints.HintError, match=message) as e:
    serving_hints.parse_cli(text)
  assert text in str(e.value)


def test_too_many_hints_are_refused_not_cut():
  many = [{'x': 0.5, 'y': 0.5, 'colour': '#ffffff'}] * (serving_hints.MAX_HINTS + 1)
  with pytest.raises(serving_hints.HintError, match='more than the 100'):
    serving_hints.from_json(many)
  with pytest.raises(serving_hints.HintError, match=r'hints\[1\]: colour'):
    serving_hints.from_json([{'x': 0.5, 'y': 0.5, 'colour': '#ffffff'}, {'x': 0.5, 'y': 0.5, 'colour': 'red'}])


def test_evaluate_simulates_the_same_hints_for_every_model(tmp_path):
  truth = (np.random.default_rng(3).uniform(0, 255, (40, 50, 3))).astype(np.uint8)
  one = evaluate.simulated_hints(truth, 'x/photo.jpg', 5)
  assert one == evaluate.simulated_hints(truth, 'x/photo.jpg', 5) != evaluate.simulated_hints(truth, 'y.jpg', 5)
  assert len(one) == 5 and all(0 <= h.x <= 1 and 0 <= h.y <= 1 for h in one)


def test_a_model_without_hints_refuses_them(tmp_path):
  path = tmp_path / '1'
  sm.save_pattern(str(path), size=64)
  plain = serving_model.Colorizer(str(path))
  assert not plain.takes_hints and 'colorize_hints' not in plain.signature_names
  with pytest.raises(serving_errors.Unsupported, match='trained without hints'):
    plain.colorize([sm.png(np.zeros((8, 8), np.uint8))], 'png', [[serving_hints.make(0.5, 0.5, '#ff0000')]])
