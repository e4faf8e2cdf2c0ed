r"""Evaluate an exported colorizer against colour ground truth, beside the grey baseline (ab = 0).

  python -m serving.evaluate --model EXPORT_DIR --images DIR_OR_GLOB [--report DIR] [--limit N] [--sample N]
      [--hints N [--seed S]] [--strength S] [--protocol full|published [--classifier-weights W] [--fid-weights W]]

Each colour photo is decoded with the pipeline's decoder, given to the model as a lossless PNG (so the model
sees exactly the truth's lightness) through the `colorize_png` signature, and the colour image that comes back
at full resolution is compared with the photo by trainer.metrics (PSNR, SSIM, colourfulness and dCF, AuC plain
and class-rebalanced with the weights of the model's own training histogram). The grey baseline is the photo's
own L with a = b = 0. Greyscale photos have no colour to compare with and are skipped (and listed).
--hints N gives a model trained with --hints N hints per photo from a simulated user (Zhang et al. 2017): at
random places in the photo, each the truth's mean colour there (serving.user_hints.simulate); the places depend only
on --seed and the photo's path, so two models get the same hints.
--strength S colours at that colour strength (0 palest .. 1 most vivid; classification models) instead of the
export's default.
--protocol published is the protocol of the field's tables (serving/published.py): each photo's short side resized
to 256 and its centre 256 x 256 cropped, before colouring and measuring; and over the whole set FID (coloured and
grey against the truth; InceptionV3 ImageNet weights: Keras' download or --fid-weights FILE) and the classifier
test (an ImageNet classifier's top-1 on the grey, coloured and true crops of photos whose synset is in their name;
--classifier-weights). A set measure whose weights cannot be had is reported as missing, on one line, and the
rest is computed.
With --report: summary.json, per_image.csv and report.html (a grid of grey input | model | truth).
"""
import csv
import dataclasses
import functools
import io
import json
import posixpath
import sys
import zlib
from typing import Optional

from pipeline import cli, quiet

tf = quiet.tensorflow()

import numpy as np
from absl import app
from PIL import Image
from tqdm import tqdm

from pipeline import colour, decode, sources
from serving import exported, files, inputs, published, report_html, user_hints
from trainer import abbins, metrics

SYSTEMS = ('model', 'grey_baseline')
PROTOCOLS = ('full', 'published')
THUMBNAIL = 256


@dataclasses.dataclass
class Evaluation:
  rows: list = dataclasses.field(default_factory=list)      # per image: path, size, model_*, grey_baseline_*
  samples: list = dataclasses.field(default_factory=list)   # (path, grey, model, truth thumbnails, row)
  skipped: list = dataclasses.field(default_factory=list)   # (path, reason)
  failed: list = dataclasses.field(default_factory=list)    # (path, reason)
  hints: int = 0                                            # simulated hints per photo
  strength: Optional[float] = None                          # colour strength asked (None: the export's default)
  protocol: str = 'full'
  sets: Optional[published.SetMeasures] = None              # the published protocol's set measures

  @functools.cached_property
  def set_summary(self):
    """The published protocol's set measures (published.SetMeasures.summary), or None; computed once (FID's
    matrix square root takes seconds)."""
    return self.sets.summary() if self.sets else None

  def summary(self):
    return {s: metrics.summarize([{k: r[f'{s}_{k}'] for k in metrics.KEYS} for r in self.rows]) for s in SYSTEMS}


def _png(rgb):
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format='PNG', compress_level=1)
  return buf.getvalue()


def _thumbnail(rgb):
  img = Image.fromarray(rgb)
  img.thumbnail((THUMBNAIL, THUMBNAIL))
  return np.asarray(img)


def _load(source, max_pixels):
  """(truth rgb uint8, None) or (None, (kind, reason)) with kind 'failed' or 'skipped'."""
  try:
    rgb, _ = decode.decode(files.read(source.url), max_pixels=max_pixels)
  except decode.DecodeError as e:
    return None, ('failed', str(e))
  except OSError as e:
    return None, ('failed', f'cannot read it: {e.strerror or e}')
  if not inputs.has_colour(rgb):
    return None, ('skipped', 'greyscale: there is no colour to compare with')
  return rgb, None


def rebalance_weights(colorizer):
  """The class-rebalancing weights of the model's training histogram (colorizer.json), or None."""
  hist = colorizer.info.get('ab_histogram') or {}
  counts = hist.get('counts')
  return abbins.rebalance_weights_grid(counts) if counts is not None else None


def simulated_hints(truth, path, count, seed=0):
  """The --hints simulated user's hints for one photo: the same for a path and seed, whatever the model."""
  rng = np.random.default_rng([seed, zlib.crc32(path.encode())])
  return user_hints.simulate(truth, count, rng)


def evaluate(colorizer, specs, limit=None, sample=24, batch_size=8, max_pixels=decode.BOMB_GUARD_PIXELS,
             progress=True, hints=0, seed=0, strength=None, protocol='full', sets=None):
  """hints: simulated hints per photo (simulated_hints), for models trained with --hints; strength: the colour
  strength (None: the export's default); protocol 'published': every photo cropped (published.crop) and, with
  `sets` (a published.SetMeasures), the set's FID and classifier test."""
  if hints and not colorizer.takes_hints:
    raise exported.ModelError(f'{colorizer.path} was trained without hints: evaluate it with --hints 0')
  if strength is not None and not colorizer.has_strength:
    raise exported.ModelError(str(colorizer.strength_unsupported()))
  found, missing = files.expand(specs)
  found = found[:limit] if limit else found
  result = Evaluation(failed=list(missing), hints=hints, strength=strength, protocol=protocol, sets=sets)
  weights = rebalance_weights(colorizer)
  stride = max(1, len(found) // sample) if sample else 0
  with tqdm(total=len(found), unit='img', desc='evaluating', disable=not progress, file=sys.stderr) as bar:
    for start in range(0, len(found), batch_size):
      batch = []
      for index, source in enumerate(found[start:start + batch_size], start):
        truth, problem = _load(source, max_pixels)
        if problem:
          (result.failed if problem[0] == 'failed' else result.skipped).append((source.url, problem[1]))
          bar.update()
        else:
          batch.append((index, source, published.crop(truth) if protocol == 'published' else truth))
      given = [simulated_hints(truth, source.url, hints, seed) for _, source, truth in batch] if hints else None
      outputs = colorizer.colorize([_png(truth) for _, _, truth in batch], 'png', given, strength)
      crops = {s: [] for s in published.SetMeasures.SYSTEMS} if sets else None
      labels = []
      for (index, source, truth), out in zip(batch, outputs):
        bar.update()
        if isinstance(out, Exception):
          result.failed.append((source.url, str(out)))
          continue
        pred = tf.io.decode_png(out, channels=3)
        true_lab = colour.rgb_to_lab(tf.cast(truth, tf.float32) / 255.0)
        pred_lab = colour.rgb_to_lab(tf.cast(pred, tf.float32) / 255.0)
        grey_lab = tf.concat([true_lab[..., :1], tf.zeros_like(true_lab[..., 1:])], axis=-1)
        row = {'path': source.url, 'height': truth.shape[0], 'width': truth.shape[1]}
        for system, lab in (('model', pred_lab), ('grey_baseline', grey_lab)):
          row.update({f'{system}_{k}': v for k, v in metrics.image_metrics(lab, true_lab, weights).items()})
        result.rows.append(row)
        shown = stride and index % stride == 0 and len(result.samples) < sample
        if shown or crops is not None:
          grey = tf.cast(tf.round(colour.lab_to_rgb(grey_lab) * 255.0), tf.uint8).numpy()
        if shown:
          result.samples.append((source.url, _thumbnail(grey), _thumbnail(pred.numpy()), _thumbnail(truth), row))
        if crops is not None:
          for system, rgb in (('model', pred.numpy()), ('grey_baseline', grey), ('truth', truth)):
            crops[system].append(rgb)
          labels.append(sources.label_of(source.url)[1])
      if crops is not None and labels:
        sets.add(crops, labels)
  return result


def table(summary, sets=None):
  """The summary as a small text table, model beside the grey baseline (and the published protocol's set
  measures: `sets`, a SetMeasures.summary())."""
  labels = [('PSNR (dB)', 'psnr', '{:.2f}'), ('SSIM', 'ssim', '{:.4f}'), ('AuC', 'auc', '{:.4f}'),
            ('AuC rebalanced', 'auc_rebalanced', '{:.4f}'), ('colourfulness', 'cf_pred', '{:.2f}'),
            ('dCF (truth CF {:.2f})'.format(summary['model'].get('cf_true', float('nan'))), 'delta_cf', '{:.2f}')]
  lines = [f'{"":24}{"model":>12}{"grey baseline":>16}']
  for label, key, fmt in labels:
    lines.append(f'{label:24}' + ''.join(f'{fmt.format(summary[s].get(key, float("nan"))):>{w}}'
                                         for s, w in zip(SYSTEMS, (12, 16))))
  sets = sets or {}
  if 'fid' in sets:
    lines.append(f'{"FID":24}' + ''.join(f'{sets["fid"][s]:>{w}.2f}' for s, w in zip(SYSTEMS, (12, 16))))
  if 'top1' in sets:
    top1 = sets['top1']
    lines.append(f'{"classifier top-1 (%)":24}{top1["model"]:>12.1f}{top1["grey_baseline"]:>16.1f}'
                 f'   (truth {top1["truth"]:.1f}, {top1["photos"]} photos)')
  return '\n'.join(lines + [f'not measured: {note}' for note in sets.get('notes', [])])


def model_description(colorizer):
  info = colorizer.info
  return {'path': colorizer.path, 'version': colorizer.version,
          **{k: info.get(k) for k in ('model', 'loss', 'embedder', 'image_size', 'step')}}


def write_report(report_dir, colorizer, result):
  summary = result.summary()
  doc = {'model': model_description(colorizer), 'images': len(result.rows), 'hints': result.hints,
         'strength': result.strength, 'protocol': result.protocol, 'metrics': summary,
         'set_metrics': result.set_summary,
         'skipped': [{'path': p, 'reason': r} for p, r in result.skipped],
         'failed': [{'path': p, 'reason': r} for p, r in result.failed]}
  files.write(posixpath.join(report_dir, 'summary.json'), json.dumps(doc, indent=2).encode())
  buf = io.StringIO()
  if result.rows:
    writer = csv.DictWriter(buf, fieldnames=list(result.rows[0]))
    writer.writeheader()
    writer.writerows(result.rows)
  files.write(posixpath.join(report_dir, 'per_image.csv'), buf.getvalue().encode())
  files.write(posixpath.join(report_dir, 'report.html'),
              report_html.render(doc, result.samples, test_model=_test_model_warning(colorizer)).encode())


def _test_model_warning(colorizer):
  embedder = colorizer.info.get('embedder')
  weights = embedder.get('weights') if isinstance(embedder, dict) else None
  return (f'This model\'s embedder has {weights} weights (a test model): its colours mean nothing.'
          if weights == 'random' else '')


@dataclasses.dataclass
class Config:
  model: Optional[str] = cli.flag(None, 'Export directory (DIR/<version>/saved_model.pb) or a version directory.',
                                  required=True)
  images: list = cli.flag(None, 'Colour photos: folder (recursive), glob, file or gs:// path; repeatable.',
                          required=True)
  report: Optional[str] = cli.flag(None, 'Directory (local or gs://) for summary.json, per_image.csv, report.html.')
  limit: Optional[int] = cli.flag(None, 'Evaluate only the first N images (in path order).', lower=1)
  sample: int = cli.flag(24, 'Images shown in the report\'s grid.', lower=0)
  batch_size: int = cli.flag(8, 'Images per model call.', lower=1)
  max_pixels: int = cli.flag(decode.BOMB_GUARD_PIXELS, 'Refuse images with more pixels: a decompression-bomb guard '
                             '(Pillow\'s own limit, as the preprocessing job\'s), not the server\'s lower budget per '
                             'request (serving.app --max-pixels).')
  hints: int = cli.flag(0, 'Simulated hints per photo (models trained with --hints).', lower=0,
                        upper=user_hints.MAX_HINTS)
  seed: int = cli.flag(0, 'Seed of the simulated hints\' places.')
  strength: Optional[float] = cli.flag(None, 'Colour strength, 0 (palest, most accurate) to 1 (most vivid); '
                                       'default: the export\'s own (classification models).', lower=0.0, upper=1.0)
  protocol: str = cli.flag('full', 'full: every photo at its own resolution; published: the field\'s tables\' '
                           'protocol (short side 256, centre crop 256; FID and the classifier test).',
                           choices=list(PROTOCOLS))
  classifier_weights: str = cli.flag('imagenet', 'The classifier test\'s MobileNetV2 weights (--protocol '
                                     'published): imagenet (Keras\' download), a weights file of the full model, '
                                     'or none.')
  fid_weights: str = cli.flag('imagenet', 'FID\'s InceptionV3 weights (--protocol published): imagenet (Keras\' '
                              'download), a weights file without the top, or none.')


def main(cfg, argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}: pass the photos with --images')
  try:
    colorizer = exported.Colorizer(cfg.model)
    sets = (published.SetMeasures(cfg.classifier_weights, cfg.fid_weights) if cfg.protocol == 'published'
            else None)
    result = evaluate(colorizer, cfg.images, cfg.limit, cfg.sample, cfg.batch_size, cfg.max_pixels,
                      hints=cfg.hints, seed=cfg.seed, strength=cfg.strength, protocol=cfg.protocol, sets=sets)
  except exported.ModelError as e:
    raise app.UsageError(str(e)) from None
  warning = _test_model_warning(colorizer)
  if warning:
    print(f'WARNING: {warning}')
  print(f'{len(result.rows)} image(s) evaluated, {len(result.skipped)} skipped (greyscale), '
        f'{len(result.failed)} failed.')
  for path, reason in result.failed:
    print(f'  FAILED {path}: {reason}')
  if result.rows:
    print(table(result.summary(), result.set_summary))
  if cfg.report:
    write_report(cfg.report, colorizer, result)
    print(f'Report: {posixpath.join(cfg.report, "report.html")} (and summary.json, per_image.csv)')
  return 1 if result.failed or not result.rows else 0


if __name__ == '__main__':
  cli.run(main, Config)
