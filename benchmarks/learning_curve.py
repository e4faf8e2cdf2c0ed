r"""How does colour quality grow with the number of training photos? The default recipe on nested subsets.

  .venv/bin/python benchmarks/learning_curve.py --more-photos ../shared/data/more-photos [--work DIR]
      [--sizes 1000,3000,all] [--seeds 0] [--largest-seeds 0,1] [--steps 2500] [--stage all|train]

1. The pool: every training-split photo of --images and --more-photos (the key-hash split the preprocessing job
   uses, so a photo is in the same split in every subset). Subset N is the first N of the pool in a fixed hashed
   order, so the subsets are nested; each also holds every val photo of --images, the photos evaluated.
2. Each subset becomes a folder of symbolic links that keeps its photos' paths relative to their input root (so
   their keys, and so their split, do not change) and is preprocessed by the product's own job: records and an
   ab histogram of its own.
3. The default recipe (trainer.task's defaults, the quality study's budget: --steps of batch 16 at 128 px) is
   trained on each, with the same steps for every size; the largest size once per --largest-seeds.
4. Each run is exported, then evaluated on the val photos twice at the default colour strength: the study's own
   protocol (full resolution) and the published one (short side 256, centre crop 256, with the classifier test:
   serving.evaluate --protocol published).
5. WORK/learning_curve.md (the table and a fit of each measure against log size, projected to ImageNet's 1.28 M
   photos with its uncertainty) and WORK/learning_curve.png.

Stages whose output exists are skipped, so an interrupted study resumes. It imports no TensorFlow.
"""
import hashlib
import json
import os

import numpy as np

import plot
import quality  # noqa: E402  (benchmarks/quality.py: the study's runner and its defaults)

from pipeline import sources  # noqa: E402  (TF-free)

IMAGENET_TRAIN = 1_281_167


def _pool(roots, val_fraction):
  """[(root index, relative path)] of every training-split photo under the roots, and the val photos of roots[0]."""
  pool, val = [], []
  for i, root in enumerate(roots):
    for folder, _, names in os.walk(root, followlinks=True):
      for name in names:
        path = os.path.join(folder, name)
        if not sources.is_image_name(path):
          continue
        rel = os.path.relpath(path, root)
        if sources.split_of(rel, val_fraction) == 'train':
          pool.append((i, rel))
        elif i == 0:
          val.append(rel)
  # Nested subsets: one fixed order, independent of the split's hash (a salt of its own).
  pool.sort(key=lambda item: hashlib.sha256(f'subset:{item[1]}'.encode()).digest())
  return pool, sorted(val)


def _subset_folders(work, roots, pool, val, size):
  """Folders of links, one per input root, that mirror the roots' layout for the first `size` photos of the pool."""
  top = os.path.join(work, 'subsets', str(size))
  folders = [os.path.join(top, f'input{i}') for i in range(len(roots))]
  if os.path.isdir(top):
    return folders
  tmp = top + '.tmp'
  chosen = [(0, rel) for rel in val] + pool[:size]
  for i, rel in chosen:
    link = os.path.join(tmp, f'input{i}', rel)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.join(roots[i], rel), link)
  os.rename(tmp, top)
  return folders


def _preprocess(args, folders, records):
  if os.path.exists(os.path.join(records, 'metadata.json')):
    return
  quality.log(f'preprocessing {records}')
  os.makedirs(os.path.dirname(records), exist_ok=True)
  quality.run(args, ['pipeline.preprocess', '--output', records] + [f'--input={f}' for f in folders] + [
      '--embedder', 'mobilenet_v2', '--embedder-weights', args.weights, '--image-size', str(args.image_size),
      '--val-fraction', str(args.val_fraction), '--num-shards', '8', '--runner', 'DirectRunner'], records + '.log')


def _train(args, records, job, seed):
  if os.path.exists(os.path.join(job, 'study.json')):
    return json.load(open(os.path.join(job, 'study.json')))['train_seconds']
  quality.log(f'training {job}')
  os.makedirs(os.path.dirname(job), exist_ok=True)
  seconds = quality.run(args, ['trainer.task', '--data', records, '--job-dir', job, '--epochs', str(args.epochs),
                               '--steps-per-epoch', str(args.steps // args.epochs), '--batch-size',
                               str(args.batch_size), '--width', str(args.width), '--val-images', '0',
                               '--checkpoint-every', '1000000', '--strategy', 'one_device', '--seed', str(seed),
                               '--noexport'], job + '.log')
  with open(os.path.join(job, 'study.json'), 'w') as f:
    json.dump({'train_seconds': seconds}, f)
  quality.log(f'trained {job} in {seconds:.0f} s')
  return seconds


def _export(args, job):
  export = os.path.join(job, 'export')
  if not os.path.isdir(export):
    quality.log(f'exporting {job}')
    quality.run(args, ['trainer.export', '--job-dir', job], job + '-export.log')
  return export


def _evaluate(args, export, photos, protocol, strength):
  """serving.evaluate's summary.json of one export on the val photos (protocol full or published)."""
  report = os.path.join(os.path.dirname(export), 'reports', f'{protocol}-{strength:g}')
  if not os.path.exists(os.path.join(report, 'summary.json')):
    quality.log(f'evaluating {export} ({protocol}, strength {strength:g})')
    os.makedirs(os.path.dirname(report), exist_ok=True)
    quality.run(args, ['serving.evaluate', '--model', export, '--images', photos, '--report', report, '--sample', '0',
                       '--protocol', protocol, '--strength', str(strength),
                       '--classifier-weights', args.weights] + (['--fid-weights', args.fid_weights]
                                                               if args.fid_weights else []), report + '.log')
  with open(os.path.join(report, 'summary.json')) as f:
    return json.load(f)


def _val_photos(work, root, val):
  """The val photos, linked into one folder (for serving.evaluate and benchmarks/strength.py)."""
  folder = os.path.join(work, 'val-photos')
  if not os.path.isdir(folder):
    os.makedirs(folder + '.tmp')
    for rel in val:
      os.symlink(os.path.join(root, rel), os.path.join(folder + '.tmp', rel.replace('/', '_')))
    os.rename(folder + '.tmp', folder)
  return folder


# What the table and the fit show: (label, where in summary.json, format). 'published' is the published protocol.
MEASURES = (('PSNR dB', ('full', 'psnr'), '{:.2f}'), ('AuC', ('full', 'auc'), '{:.4f}'),
            ('AuC rebal.', ('full', 'auc_rebalanced'), '{:.4f}'), ('CF / truth', ('full', 'cf_ratio'), '{:.1%}'),
            ('PSNR dB, published', ('published', 'psnr'), '{:.2f}'),
            ('CF / truth, published', ('published', 'cf_ratio'), '{:.1%}'),
            ('top-1 %, published', ('published', 'top1'), '{:.1f}'))


def _measures(summaries, system='model'):
  out = {}
  for protocol, summary in summaries.items():
    m = dict(summary['metrics'][system])
    m['cf_ratio'] = m['cf_pred'] / m['cf_true']
    for key, value in m.items():
      out[(protocol, key)] = value
    top1 = (summary.get('set_metrics') or {}).get('top1')
    if top1:   # the classifier test: the model's, or (grey, below) the grey baseline's
      out[(protocol, 'top1')] = top1[system]
      out[(protocol, 'top1_truth')] = top1['truth']
  return out


# Student's t at 97.5 % for the fit's degrees of freedom (runs - 2): a 95 % prediction interval.
T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31}


def _fit(sizes, values, at):
  """Least squares value = a + b log10(size) over the runs -> (b per decade, prediction at `at`, its 95 %
  prediction interval's half width: residual noise and the slope's uncertainty, both grown by the extrapolation)."""
  x, y = np.log10(np.asarray(sizes, float)), np.asarray(values, float)
  b, a = np.polyfit(x, y, 1)
  dof = len(x) - 2
  residual = np.sqrt(((y - (a + b * x)) ** 2).sum() / dof) if dof > 0 else float('nan')
  x0 = np.log10(at)
  spread = residual * np.sqrt(1 + 1 / len(x) + (x0 - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
  return b, a + b * x0, T975.get(dof, 2.0) * spread


def _report(args, results, grey, n_val):
  """learning_curve.md and learning_curve.png from {(size, seed): {measure key: value}}."""
  sizes = sorted({size for size, _ in results})
  lines = ['# Learning curve: the default recipe on nested subsets of the training photos', '',
           f'{n_val} val photos (the ImageNet sample\'s val split), {args.steps} steps of batch {args.batch_size} '
           f'at {args.image_size} px per run, evaluated at colour strength {args.strength:g} (the default), on the '
           'study\'s protocol (full resolution) and the published one (short side 256, centre crop 256).', '',
           '| training photos | seed | ' + ' | '.join(label for label, _, _ in MEASURES) + ' |',
           '|---|---|' + '---|' * len(MEASURES)]
  for (size, seed), m in sorted(results.items()):
    lines.append(f'| {size:,} | {seed} | ' + ' | '.join(fmt.format(m[key]) for _, key, fmt in MEASURES) + ' |')
  lines.append('| grey baseline | | ' + ' | '.join(fmt.format(grey.get(key, float('nan')))
                                                   for _, key, fmt in MEASURES) + ' |')
  truth = grey.get(('published', 'top1_truth'))
  if truth is not None:
    lines += ['', f'The classifier test\'s top-1 on the true colour crops: {truth:.1f} % (MobileNetV2, ImageNet weights; '
                  'the photos are from ILSVRC-2012, whose training set the classifier learnt, so they may be among its training photos).']
  lines += ['', 'A straight line of each measure against log10(training photos), fitted to every run, and what it '
                f'projects at ImageNet\'s {IMAGENET_TRAIN:,} photos, 2.2 decades beyond the data, with its 95 % '
                'prediction interval (t on runs - 2 degrees of freedom; it assumes the line holds that far, which '
                'nothing here can show: a trend, not a forecast).',
            '', '| measure | per 10x photos | at 1.28 M | 95 % interval |', '|---|---|---|---|']
  for label, key, fmt in MEASURES:
    runs = sorted(results.items())
    slope, at, half = _fit([size for (size, _), _ in runs], [m[key] for _, m in runs], IMAGENET_TRAIN)
    lines.append(f'| {label} | {"+" if slope >= 0 else ""}{fmt.format(slope)} | {fmt.format(at)}'
                 f' | {fmt.format(at - half)} to {fmt.format(at + half)} |')
  with open(os.path.join(args.work, 'learning_curve.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))
  colours = {'full': '#1f77b4', 'published': '#d62728'}
  series = []
  for protocol in ('full', 'published'):
    points, error = [], []
    for size in sizes:
      values = [m[(protocol, 'psnr')] for (sz, _), m in results.items() if sz == size]
      points.append((size, float(np.mean(values)), f'{np.mean(values):.2f}'))
      error.append((min(values), max(values)))
    name = 'the study\'s protocol' if protocol == 'full' else 'the published protocol'
    series.append(plot.Series(f'PSNR, {name}', points, colours[protocol], error=error))
  plot.chart(os.path.join(args.work, 'learning_curve.png'), 'PSNR of the default recipe against training photos',
             'training photos (log scale)', 'PSNR (dB)', series, log_x=True,
             hlines=[(grey[('full', 'psnr')], 'grey, study'), (grey[('published', 'psnr')], 'grey, published')])


def main():
  p = quality.study_arguments(__doc__, 'learning-curve-output')
  p.add_argument('--sizes', default='1000,3000,all', help='training photos per subset; all: the whole pool')
  p.add_argument('--seeds', default='0', help='seeds of every size')
  p.add_argument('--largest-seeds', default='0,1', help='seeds of the largest size')
  p.add_argument('--steps', type=int, default=2500)
  p.add_argument('--epochs', type=int, default=4)
  p.add_argument('--batch-size', type=int, default=16)
  p.add_argument('--strength', type=float, default=0.25, help='the colour strength evaluated (the default)')
  p.add_argument('--fid-weights', default=None, help='InceptionV3 notop weights for FID (default: none, no FID)')
  p.add_argument('--stage', choices=('all', 'train'), default='all', help='train: stop after training')
  args = p.parse_args()
  quality.check_inputs(args)
  roots = [args.images] + args.more_photos
  os.makedirs(args.work, exist_ok=True)
  pool, val = _pool(roots, args.val_fraction)
  sizes = sorted({len(pool) if s == 'all' else min(int(s), len(pool)) for s in args.sizes.split(',')})
  quality.log(f'pool: {len(pool)} training photos; {len(val)} val photos; sizes {sizes}')
  runs = []
  for size in sizes:
    seeds = args.largest_seeds if size == sizes[-1] else args.seeds
    runs += [(size, int(seed)) for seed in seeds.split(',')]
  for size, seed in runs:
    folders = _subset_folders(args.work, roots, pool, val, size)
    records = os.path.join(args.work, 'records', str(size))
    _preprocess(args, folders, records)
    _train(args, records, os.path.join(args.work, 'jobs', f'{size}-seed{seed}'), seed)
  if args.stage == 'train':
    return
  photos = _val_photos(args.work, roots[0], val)
  results, grey = {}, None
  for size, seed in runs:
    export = _export(args, os.path.join(args.work, 'jobs', f'{size}-seed{seed}'))
    summaries = {p: _evaluate(args, export, photos, p, args.strength) for p in ('full', 'published')}
    results[(size, seed)] = _measures(summaries)
    grey = grey or _measures(summaries, 'grey_baseline')
  _report(args, results, grey, len(val))


if __name__ == '__main__':
  main()
