r"""Do hints steer the colour? A hint-trained unet against the same recipe without hints.

  .venv/bin/python benchmarks/hints.py [--work DIR] [--more-photos DIR ...] [--steps 2500] [--counts 0,1,2,5,10,20,50]

1. the quality study's records (benchmarks/quality.py: the ImageNet sample plus --more-photos, 128 px, real
   MobileNetV2 weights), reused when WORK already holds them,
2. two models with the same budget and trainer.task's defaults: `hints` (--hints) and `auto` (without),
3. serving.evaluate on the ImageNet sample's val photos with 0, 1, 2, 5, ... hints per photo from the simulated
   user (random places in the photo, the truth's mean colour there; the same places for both models and every
   run), and `auto` with 0,
4. WORK/hints.md (the curve beside the grey baseline and `auto`, the targets) and WORK/hints-grid.jpg
   (grey | automatic | 10 hints, drawn as dots | truth), coloured with serving.colorize --hints-file.

Every stage is the product's command line in a subprocess; stages whose output exists are skipped.
"""
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality  # noqa: E402  (its records, val photos, run() and grid cells)

from serving import user_hints as hints_lib  # noqa: E402  (TF-free)

GRID_HINTS = 10
METRICS = (('PSNR dB', 'psnr', '{:.2f}'), ('AuC', 'auc', '{:.4f}'), ('AuC rebal.', 'auc_rebalanced', '{:.4f}'),
           ('ΔCF', 'delta_cf', '{:.2f}'))


def train(args, records, name, extra):
  job = os.path.join(args.work, 'jobs', name)
  if os.path.isdir(os.path.join(job, 'export')):
    quality.log(f'{name}: {job}/export exists, reused')
    return job
  quality.log(f'{name}: training {args.steps} steps {" ".join(extra)}')
  seconds = quality.run(args, ['trainer.task', '--data', records, '--job-dir', job, '--model', 'unet',
                               '--loss', 'classification', '--epochs', str(args.epochs),
                               '--steps-per-epoch', str(args.steps // args.epochs), '--batch-size',
                               str(args.batch_size), '--width', str(args.width), '--val-images', '0',
                               '--checkpoint-every', '500', '--strategy', 'one_device'] + extra,
                        os.path.join(args.work, f'train-{name}.log'))
  quality.log(f'{name}: trained and exported in {seconds:.0f} s')
  return job


def evaluate(args, job, name, photos, count):
  report = os.path.join(args.work, 'reports', f'{name}-{count}')
  if not os.path.exists(os.path.join(report, 'summary.json')):
    quality.run(args, ['serving.evaluate', '--model', os.path.join(job, 'export'), '--images', photos,
                       '--report', report, '--sample', '0', '--hints', str(count), '--seed', str(args.seed)],
                os.path.join(args.work, f'evaluate-{name}-{count}.log'))
  with open(os.path.join(report, 'summary.json')) as f:
    return json.load(f)['metrics']


def grid(args, jobs, grid_inputs, names):
  """grey | automatic | GRID_HINTS hints (dots) | truth, coloured by serving.colorize (the CLI users run)."""
  hints, truths = {}, {}
  for name in names:
    truth = np.asarray(Image.open(os.path.join(grid_inputs, name)).convert('RGB'))
    truths[name] = truth
    rng = np.random.default_rng([args.seed, len(name)] + [ord(c) for c in name])
    hints[name] = hints_lib.simulate(truth, GRID_HINTS, rng)
  hints_file = os.path.join(args.work, 'grid-hints.json')
  with open(hints_file, 'w') as f:
    json.dump({n: [h.to_json() for h in hs] for n, hs in hints.items()}, f, indent=1)
  outputs = {}
  for column, extra in (('automatic', []), (f'{GRID_HINTS} hints', ['--hints-file', hints_file])):
    out = os.path.join(args.work, 'grid', column.replace(' ', '-'))
    if not os.path.isdir(out):
      quality.run(args, ['serving.colorize', '--model', os.path.join(jobs['hints'], 'export'), '--output', out,
                         '--format', 'png', grid_inputs] + extra, os.path.join(args.work, 'colorize-grid.log'))
    outputs[column] = out
  columns = ['grey input'] + list(outputs) + ['truth']
  cell, header = quality.CELL, 24
  image = Image.new('RGB', (cell * len(columns), header + cell * len(names)), 'white')
  draw = ImageDraw.Draw(image)
  for c, title in enumerate(columns):
    draw.text((c * cell + 6, 6), title, fill='black')
  for r, name in enumerate(names):
    src = os.path.join(grid_inputs, name)
    cells = [quality._cell(src, grey=True)] + [quality._cell(os.path.join(d, os.path.splitext(name)[0] + '.png'))
                                              for d in outputs.values()] + [quality._cell(src)]
    height, width = truths[name].shape[:2]
    scale = cell / max(height, width)
    left, top = (cell - round(width * scale)) // 2, (cell - round(height * scale)) // 2
    dots = ImageDraw.Draw(cells[2])
    for h in hints[name]:   # where the hints are, in their colour, ringed so they show on any background
      x, y = left + h.x * width * scale, top + h.y * height * scale
      dots.ellipse([x - 4, y - 4, x + 4, y + 4], fill=h.rgb, outline='white')
    for c, content in enumerate(cells):
      image.paste(content, (c * cell, header + r * cell))
  path = os.path.join(args.work, 'hints-grid.jpg')
  image.save(path, quality=90)
  return path


def main():
  p = quality.study_arguments(__doc__, 'hints-output')
  p.add_argument('--steps', type=int, default=2500)
  p.add_argument('--epochs', type=int, default=5)
  p.add_argument('--batch-size', type=int, default=16)
  p.add_argument('--counts', default='0,1,2,5,10,20,50', help='hints per photo to evaluate')
  p.add_argument('--seed', type=int, default=0, help='the simulated hints\' places')
  args = p.parse_args()
  quality.check_inputs(args)
  os.makedirs(args.work, exist_ok=True)
  counts = [int(c) for c in args.counts.split(',')]

  records = os.path.join(args.work, f'records-{args.image_size}' + ('-more' if args.more_photos else ''))
  quality.preprocess(args, records)
  photos = os.path.join(args.work, 'val-photos')
  val = quality.val_photos(records, photos, args.images)
  jobs = {'hints': train(args, records, 'hints', ['--hints']), 'auto': train(args, records, 'auto', [])}

  rows = {'auto': {0: evaluate(args, jobs['auto'], 'auto', photos, 0)}}
  rows['hints'] = {}
  for count in counts:
    rows['hints'][count] = evaluate(args, jobs['hints'], 'hints', photos, count)
    m = rows['hints'][count]['model']
    quality.log(f'{count} hints: PSNR {m["psnr"]:.2f}, AuC {m["auc"]:.4f}, ΔCF {m["delta_cf"]:.2f}')
  grey, auto = rows['auto'][0]['grey_baseline'], rows['auto'][0]['model']

  lines = ['| | hints per photo | ' + ' | '.join(label for label, _, _ in METRICS) + ' |',
           '|---|---|' + '---|' * len(METRICS)]
  fmt = lambda m: ' | '.join(f.format(m[key]) for _, key, f in METRICS)
  lines.append(f'| grey baseline (ab = 0) | | {fmt(grey)} |')
  lines.append(f'| auto (trained without hints) | 0 | {fmt(auto)} |')
  for count in counts:
    lines.append(f'| hints | {count} | {fmt(rows["hints"][count]["model"])} |')
  zero = rows['hints'].get(0, {}).get('model')
  ten = rows['hints'].get(10, {}).get('model')
  verdict = lambda ok: '**met**' if ok else '**missed**'
  targets = []
  if zero:
    targets.append(f'- 0 hints vs the model trained without: PSNR {zero["psnr"]:.2f} vs {auto["psnr"]:.2f} dB, AuC '
                   f'{zero["auc"]:.4f} vs {auto["auc"]:.4f}, AuC rebal. {zero["auc_rebalanced"]:.4f} vs '
                   f'{auto["auc_rebalanced"]:.4f} (compare with the run-to-run noise in BENCHMARKS.md)')
  if ten:
    targets.append(f'- 10 hints: PSNR {ten["psnr"]:.2f} dB vs grey {grey["psnr"]:.2f} + 2 = {grey["psnr"] + 2:.2f}: '
                   f'{verdict(ten["psnr"] >= grey["psnr"] + 2)}')
  grid_inputs = os.path.join(args.work, 'grid', 'inputs')
  if not os.path.isdir(grid_inputs):
    os.makedirs(grid_inputs)
    for name in val[::max(1, len(val) // quality.GRID_IMAGES)][:quality.GRID_IMAGES] + [
        n for n in quality.SCENERY if n in val]:
      os.symlink(os.path.realpath(os.path.join(photos, name)), os.path.join(grid_inputs, name))
  grid_path = grid(args, jobs, grid_inputs, sorted(os.listdir(grid_inputs)))
  doc = ['# Hints study', '', f'{len(val)} val photos of {args.images}, {args.steps} steps of batch '
         f'{args.batch_size} at {args.image_size} px, width {args.width}, unet-classification; simulated hints '
         f'(seed {args.seed})', ''] + lines + ['', 'Targets:', ''] + targets + ['', f'Grid: {grid_path}']
  with open(os.path.join(args.work, 'hints.md'), 'w') as f:
    f.write('\n'.join(doc) + '\n')
  print('\n'.join(doc))


if __name__ == '__main__':
  main()
