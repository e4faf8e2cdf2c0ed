"""The colorizer's metrics, defined once: the trainer's validation and `serving.evaluate` both call these.

All metrics are of ONE image already cropped to its content box (ARCHITECTURE.md, Evaluation):
  psnr            PSNR of the 8-bit sRGB images (data range 255), capped at PSNR_CAP_DB for identical images
  ssim            SSIM of the 8-bit sRGB images: Gaussian window sigma 1.5 (11 taps), data range 255,
                  population covariance, mean over the channels (= skimage's structural_similarity with
                  gaussian_weights=True, sigma=1.5, use_sample_covariance=False); NaN below 11 px a side
  cf_pred/cf_true colourfulness (Hasler & Suesstrunk 2003) of the 8-bit images, absolute-value form:
                  rg = |R - G|, yb = |(R + G) / 2 - B|, CF = sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mu_rg^2 + mu_yb^2)
  auc             raw ab accuracy (Zhang et al. 2016): the share of pixels whose ab lies within t of the truth's
                  (L2), for t = 0, 1, ..., 150, integrated with the trapezoid rule and divided by 150
  auc_rebalanced  the same with each pixel weighted by ab_weights at the 23 x 23 histogram cell of its TRUE
                  ab (pipeline.schema's AB_HIST_* grid), so rare colours count as much as common ones

Images go to 8-bit sRGB through pipeline.colour.lab_to_rgb (the one colour conversion) and are rounded, as a
saved file would be, so PSNR and SSIM measure what a user sees. AuC is on the raw, unrounded ab.
"""
import math

import numpy as np
import tensorflow as tf

from pipeline import colour, schema

AUC_MAX_THRESHOLD = 150
PSNR_CAP_DB = 100.0     # identical 8-bit images would be +inf, which would swamp every mean
SSIM_WINDOW = 11        # 2 * int(3.5 * 1.5 + 0.5) + 1: skimage's window for sigma 1.5
SSIM_SIGMA = 1.5
KEYS = ('psnr', 'ssim', 'cf_pred', 'cf_true', 'auc', 'auc_rebalanced')

_GRID = (schema.AB_HIST_BINS, schema.AB_HIST_BINS)


def _rgb8(lab):
  return tf.round(colour.lab_to_rgb(lab) * 255.0)


def _psnr(x, y):
  mse = tf.reduce_mean(tf.square(x - y))
  psnr = 10.0 * tf.math.log(255.0 ** 2 / mse) / math.log(10.0)
  return tf.where(mse > 0, tf.minimum(psnr, PSNR_CAP_DB), PSNR_CAP_DB)


def _ssim(x, y):
  # tf.image.ssim is skimage's Gaussian SSIM (same 11-tap window, valid region only, population covariance);
  # it cannot run on an image smaller than its window, where skimage refuses too.
  shape = tf.shape(x)
  fits = tf.logical_and(shape[0] >= SSIM_WINDOW, shape[1] >= SSIM_WINDOW)
  return tf.cond(fits,
                 lambda: tf.image.ssim(x, y, max_val=255.0, filter_size=SSIM_WINDOW, filter_sigma=SSIM_SIGMA),
                 lambda: tf.constant(float('nan')))


def _colourfulness(rgb):
  r, g, b = tf.unstack(tf.reshape(rgb, [-1, 3]), axis=-1)
  rg = tf.abs(r - g)
  yb = tf.abs(0.5 * (r + g) - b)
  spread = tf.sqrt(tf.math.reduce_variance(rg) + tf.math.reduce_variance(yb))
  mean = tf.sqrt(tf.reduce_mean(rg) ** 2 + tf.reduce_mean(yb) ** 2)
  return spread + 0.3 * mean


def _auc(distance, weights):
  """Weighted AuC of the cumulative accuracy over thresholds 0..150 (trapezoid rule, normalised to [0, 1])."""
  # A pixel is within threshold t from t = ceil(distance) on: a weighted histogram of that first threshold
  # and its cumulative sum give the accuracy curve in O(pixels) memory (a [pixels, 151] mask would not fit
  # for a 2400 x 1600 photo). Bin 151 collects the pixels beyond every threshold.
  first = tf.cast(tf.minimum(tf.math.ceil(distance), AUC_MAX_THRESHOLD + 1), tf.int32)
  mass = tf.math.unsorted_segment_sum(weights, first, AUC_MAX_THRESHOLD + 2)
  accuracy = tf.cumsum(mass)[:AUC_MAX_THRESHOLD + 1] / tf.reduce_sum(weights)
  return (tf.reduce_sum(accuracy) - 0.5 * (accuracy[0] + accuracy[-1])) / AUC_MAX_THRESHOLD


@tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32),
                              tf.TensorSpec([None, None, 3], tf.float32),
                              tf.TensorSpec(_GRID, tf.float32)])
def _metrics(pred_lab, true_lab, ab_weights):
  pred_rgb, true_rgb = _rgb8(pred_lab), _rgb8(true_lab)
  pred_ab = tf.reshape(pred_lab[..., 1:], [-1, 2])
  true_ab = tf.reshape(true_lab[..., 1:], [-1, 2])
  distance = tf.norm(pred_ab - true_ab, axis=-1)
  return {
      'psnr': _psnr(pred_rgb, true_rgb),
      'ssim': _ssim(pred_rgb, true_rgb),
      'cf_pred': _colourfulness(pred_rgb),
      'cf_true': _colourfulness(true_rgb),
      'auc': _auc(distance, tf.ones_like(distance)),
      'auc_rebalanced': _auc(distance, tf.gather_nd(ab_weights, schema.ab_cells(true_ab))),
  }


def image_metrics(pred_lab, true_lab, ab_weights=None):
  """Metrics of one image: pred_lab, true_lab [H, W, 3] Lab (TF or numpy), cropped to the content box.

  ab_weights: [23, 23] class-rebalancing weights over pipeline.schema's ab grid (trainer.abbins'
  rebalance_weights_grid); None weighs every pixel alike, so auc_rebalanced equals auc.
  Returns a dict of Python floats with the keys in KEYS.
  """
  pred_lab = tf.convert_to_tensor(pred_lab, tf.float32)
  true_lab = tf.convert_to_tensor(true_lab, tf.float32)
  if pred_lab.shape.rank != 3 or pred_lab.shape[-1] != 3 or pred_lab.shape != true_lab.shape:
    raise ValueError(f'image_metrics needs two Lab images of the same shape [H, W, 3], got {pred_lab.shape} '
                     f'and {true_lab.shape}')
  if pred_lab.shape[0] == 0 or pred_lab.shape[1] == 0:
    raise ValueError(f'image_metrics got an empty image {pred_lab.shape}: is the content box right?')
  weights = tf.ones(_GRID) if ab_weights is None else tf.convert_to_tensor(ab_weights, tf.float32)
  if weights.shape != _GRID:
    raise ValueError(f'ab_weights must have shape {_GRID} (pipeline.schema AB_HIST_BINS), got {weights.shape}')
  return {k: float(v) for k, v in _metrics(pred_lab, true_lab, weights).items()}


def summarize(results):
  """Means over images of image_metrics dicts, plus n and delta_cf = |mean cf_pred - mean cf_true|.

  NaN entries (SSIM of images under 11 px a side) are left out of their mean; n_ssim counts the rest.
  """
  if not results:
    return {'n': 0}
  summary = {'n': len(results)}
  for key in KEYS:
    values = np.array([r[key] for r in results], np.float64)
    finite = values[~np.isnan(values)]
    summary[key] = float(finite.mean()) if finite.size else float('nan')
  summary['n_ssim'] = int(sum(not math.isnan(r['ssim']) for r in results))
  summary['delta_cf'] = abs(summary['cf_pred'] - summary['cf_true'])
  return summary
