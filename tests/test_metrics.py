"""trainer.metrics against answers known in closed form and against skimage's own metrics."""
import numpy as np
import pytest
import skimage.color
import skimage.data
import skimage.metrics
import tensorflow as tf

from pipeline import schema
from trainer import metrics


def _photo(h=96, w=120, name='astronaut'):
  """A crop of one of skimage's bundled colour photos (uint8 RGB), so there is real texture and colour."""
  return getattr(skimage.data, name)()[100:100 + h, 150:150 + w]


def _lab(rgb8):
  return skimage.color.rgb2lab(rgb8).astype(np.float32)


def _const_lab(h, w, l, a, b, seed=0):
  """A Lab image with the given (constant) ab and a random lightness between l - 10 and l + 10."""
  rng = np.random.default_rng(seed)
  lab = np.empty((h, w, 3), np.float32)
  lab[..., 0] = rng.uniform(l - 10, l + 10, (h, w))
  lab[..., 1], lab[..., 2] = a, b
  return lab


def _grey(lab):
  return np.concatenate([lab[..., :1], np.zeros_like(lab[..., 1:])], axis=-1)


def test_perfect_prediction():
  truth = _lab(_photo())
  m = metrics.image_metrics(truth, truth)
  assert set(m) == set(metrics.KEYS)
  assert m['psnr'] == metrics.PSNR_CAP_DB
  assert m['ssim'] == pytest.approx(1.0, abs=1e-6)
  assert m['auc'] == pytest.approx(1.0, abs=1e-6)
  assert m['auc_rebalanced'] == pytest.approx(1.0, abs=1e-6)
  assert m['cf_pred'] == m['cf_true'] > 10   # the photo is colourful


def test_grey_prediction_of_constant_colour():
  # Every true pixel is 50.5 ab units from grey, so accuracy is 0 below t = 50.5 and 1 from there:
  # AuC = (150 - 50.5) / 150. A half-integer distance makes the trapezoid rule exact.
  truth = _const_lab(40, 50, l=60, a=50.5, b=0.0)
  m = metrics.image_metrics(_grey(truth), truth)
  assert m['auc'] == pytest.approx((150 - 50.5) / 150, abs=1e-6)
  assert m['auc_rebalanced'] == m['auc']
  assert m['cf_pred'] == pytest.approx(0.0, abs=0.5)   # grey has no colour (up to 8-bit rounding)
  assert m['cf_true'] > 20
  assert m['psnr'] < 30


def test_constant_shift():
  truth = _lab(_photo())
  pred = truth.copy()
  pred[..., 1:] += np.array([6.3, 8.4], np.float32)      # |(6.3, 8.4)| = 10.5
  m = metrics.image_metrics(pred, truth)
  assert m['auc'] == pytest.approx((150 - 10.5) / 150, abs=1e-5)
  assert metrics.image_metrics(pred, truth, np.full((23, 23), 7.0))['auc_rebalanced'] == pytest.approx(
      m['auc'], abs=1e-6)   # uniform weights are no weights


def test_rebalanced_auc_weighs_by_the_true_colour_cell():
  truth = np.concatenate([_const_lab(20, 30, 50, 0.0, 0.0), _const_lab(20, 30, 50, 50.5, 0.0)], axis=0)
  weights = np.ones((23, 23), np.float32)
  weights[16, 11] = 3.0     # a = 50.5 lies in cell floor((50.5 + 115) / 10) = 16, b = 0 in cell 11
  m = metrics.image_metrics(_grey(truth), truth, weights)
  hit, miss = 1.0, (150 - 50.5) / 150       # AuC of the grey half (exact) and of the coloured half
  assert m['auc'] == pytest.approx(0.5 * hit + 0.5 * miss, abs=1e-6)
  assert m['auc_rebalanced'] == pytest.approx((1 * hit + 3 * miss) / 4, abs=1e-6)


def test_ab_cells_match_the_pipelines_histogram():
  rng = np.random.default_rng(1)
  lab = np.concatenate([rng.uniform(0, 100, (32, 32, 1)), rng.uniform(-130, 130, (32, 32, 2))],
                       axis=-1).astype(np.float32)
  expected = schema.ab_histogram(tf.constant(lab), tf.constant([0, 0, 32, 32])).numpy()
  cells = schema.ab_cells(lab[..., 1:].reshape(-1, 2)).numpy()
  counts = np.zeros((23, 23), np.int64)
  np.add.at(counts, (cells[:, 0], cells[:, 1]), 1)
  np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize('shape', [(96, 120), (37, 53)])
def test_psnr_and_ssim_agree_with_skimage(shape):
  truth8 = _photo(*shape)
  rng = np.random.default_rng(2)
  pred8 = np.clip(truth8 + rng.normal(0, 12, truth8.shape), 0, 255).round().astype(np.uint8)
  m = metrics.image_metrics(_lab(pred8), _lab(truth8))
  # Lab -> 8-bit goes through pipeline.colour (within 0.05 Lab of skimage), so a rare pixel may round the
  # other way; that moves PSNR by far less than 0.01 dB.
  assert m['psnr'] == pytest.approx(skimage.metrics.peak_signal_noise_ratio(truth8, pred8, data_range=255),
                                    abs=0.01)
  assert m['ssim'] == pytest.approx(skimage.metrics.structural_similarity(
      truth8, pred8, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
      channel_axis=-1), abs=1e-4)


def test_colourfulness_is_hasler_suesstrunk_absolute_form():
  rgb8 = _photo(name='coffee')
  r, g, b = (rgb8[..., i].astype(np.float64) for i in range(3))
  rg, yb = np.abs(r - g), np.abs(0.5 * (r + g) - b)
  expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
  m = metrics.image_metrics(_grey(_lab(rgb8)), _lab(rgb8))
  assert m['cf_true'] == pytest.approx(expected, rel=1e-3)


def test_tensorflow_and_numpy_inputs_agree():
  truth = _lab(_photo())
  pred = _grey(truth)
  assert metrics.image_metrics(tf.constant(pred), tf.constant(truth)) == metrics.image_metrics(pred, truth)


def test_tiny_image_has_no_ssim_and_summarize_skips_it():
  truth = _const_lab(5, 40, 50, 20.5, 0.0)
  tiny = metrics.image_metrics(_grey(truth), truth)
  assert np.isnan(tiny['ssim'])
  big = metrics.image_metrics(_lab(_photo()), _lab(_photo()))
  s = metrics.summarize([tiny, big])
  assert s['n'] == 2 and s['n_ssim'] == 1
  assert s['ssim'] == pytest.approx(big['ssim'])
  assert s['psnr'] == pytest.approx((tiny['psnr'] + big['psnr']) / 2)


def test_summarize_delta_cf():
  rows = [dict.fromkeys(metrics.KEYS, 1.0) | {'cf_pred': 10.0, 'cf_true': 30.0},
          dict.fromkeys(metrics.KEYS, 3.0) | {'cf_pred': 20.0, 'cf_true': 10.0}]
  s = metrics.summarize(rows)
  assert s['cf_pred'] == 15.0 and s['cf_true'] == 20.0 and s['delta_cf'] == 5.0
  assert s['psnr'] == 2.0 and s['n'] == 2
  assert metrics.summarize([]) == {'n': 0}


def test_bad_shapes_are_refused_with_the_reason():
  with pytest.raises(ValueError, match='same shape'):
    metrics.image_metrics(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
  with pytest.raises(ValueError, match='ab_weights'):
    metrics.image_metrics(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.ones((22, 22)))
