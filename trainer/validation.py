"""Validation at each epoch's end: the mean loss, ARCHITECTURE.md's metrics and sample montages for TensorBoard."""
import tensorflow as tf

from pipeline import colour
from trainer import metrics


def montage(l, pred_ab, true_ab):
  """grey | predicted | truth, side by side: float [S, 3S, 3] in [0, 1]."""
  grey = tf.repeat(colour.grey_rgb(l[..., 0])[..., None], 3, axis=-1)
  pred = colour.lab_to_rgb(tf.concat([l, pred_ab], -1))
  true = colour.lab_to_rgb(tf.concat([l, true_ab], -1))
  return tf.concat([grey, pred, true], axis=1)


def validate(trainer, dataset, ab_weights, cfg):
  """Mean loss, ARCHITECTURE.md's metrics on each image's content box (trainer.metrics), and sample montages."""
  results, loss_sum, samples = [], 0.0, []
  for batch in dataset:
    per_example, ab, x, y = trainer.predict(batch)
    loss_sum += float(tf.reduce_sum(per_example))
    for i in range(ab.shape[0]):
      t, l, h, w = y['box'][i].numpy()
      crop = lambda img: img[t:t + h, l:l + w]
      results.append(metrics.image_metrics(crop(tf.concat([x['l'][i], ab[i]], -1)),
                                           crop(tf.concat([x['l'][i], y['ab'][i]], -1)), ab_weights))
      if len(samples) < cfg.sample_images:
        samples.append(montage(x['l'][i], ab[i], y['ab'][i]))
    if len(results) >= cfg.val_images:
      break
  summary = metrics.summarize(results)
  summary['loss'] = loss_sum / max(1, len(results))
  return summary, samples
