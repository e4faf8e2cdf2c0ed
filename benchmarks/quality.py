r"""Does it colour well? The whole chain, several ways, measured on held-out ImageNet photos.

  .venv/bin/python benchmarks/quality.py [--images DIR] [--more-photos DIR ...] [--weights FILE] [--work DIR]
      [--image-size 128] [--width 0.5] [--steps 600] [--batch-size 16] [--trainer-args "--zoom 0.6 ..."]
      [--only NAME,...]

1. preprocess the photos (real ImageNet MobileNetV2 weights; the key-hash val split), with --more-photos
   folders added to the job (their val share is not evaluated: the val photos stay the --images ones),
2. train each of --only ({unet, fusion, beta} x {classification, mse}) with the same budget (steps, batch,
   seed) and otherwise trainer.task's defaults (learning rate, schedule, augmentation, loss weighting), plus
   --trainer-args; the unet's encoder finds the MobileNetV2 weights through the records' metadata,
3. evaluate each export on the val photos with serving.evaluate (full resolution, beside the grey baseline),
4. write WORK/quality.md (the table, the targets and the settings) and WORK/grid.jpg (grey | each | truth).

Every stage is the product's own command line, run as a subprocess, so this measures what users run. This
script imports no TensorFlow (it reads the val keys with the TF-free pipeline.npreader). Stages whose output
exists are skipped, so an interrupted study resumes; --fresh starts over.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, '..', 'shared')

from PIL import Image, ImageDraw  # noqa: E402

from pipeline import npreader  # noqa: E402  (TF-free)

COMBINATIONS = ('unet-classification', 'unet-mse', 'fusion-classification', 'fusion-mse', 'beta-classification',
                'beta-mse')
DEFAULT_ONLY = 'unet-classification,fusion-classification'   # the default model and the one it replaced
METRICS = (('PSNR dB', 'psnr', '{:.2f}'), ('SSIM', 'ssim', '{:.4f}'), ('AuC', 'auc', '{:.4f}'),
           ('AuC rebal.', 'auc_rebalanced', '{:.4f}'), ('CF', 'cf_pred', '{:.2f}'),
           ('CF / truth', 'cf_ratio', '{:.1%}'), ('ΔCF', 'delta_cf', '{:.2f}'))
GRID_IMAGES, CELL = 8, 192
# Also on the grid when they are val photos (they are in the ImageNet sample's split): sky, water and stone,
# where a user sees at once whether the colour is believable.
SCENERY = ('n02894605_breakwater.JPEG', 'n03160309_dam.JPEG', 'n09193705_alp.JPEG', 'n09472597_volcano.JPEG')


def log(message, started=[time.perf_counter()]):  # noqa: B006  (one start time for the whole run)
  print(f'[{time.perf_counter() - started[0]:7.0f} s] {message}', flush=True)


def run(args, cmd, log_file):
  """Run one of the product's commands; its output goes to log_file (the error tail is shown on failure)."""
  started = time.perf_counter()
  with open(log_file, 'w') as f:
    code = subprocess.call([sys.executable, '-m'] + cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  if code:
    with open(log_file) as f:
      tail = f.read()[-3000:]
    sys.exit(f'{" ".join(cmd[:1])} failed (exit {code}); the end of {log_file}:\n{tail}')
  return time.perf_counter() - started


def preprocess(args, records):
  if os.path.exists(os.path.join(records, 'metadata.json')):
    log(f'records: {records} exists, reused')
    return
  inputs = [args.images] + args.more_photos
  log(f'preprocessing {", ".join(inputs)} at {args.image_size} px with MobileNetV2 ({args.weights})')
  seconds = run(args, ['pipeline.preprocess', '--output', records] + [f'--input={i}' for i in inputs] + [
                       '--embedder', 'mobilenet_v2', '--embedder-weights', args.weights,
                       '--image-size', str(args.image_size), '--val-fraction', str(args.val_fraction),
                       '--num-shards', '8', '--runner', 'DirectRunner'], records + '.log')
  log(f'records: {records} ({seconds:.0f} s)')


def val_photos(records, folder, images):
  """The val split's photos from `images` (keys of the val records), linked into one folder for serving.evaluate."""
  if not os.path.isdir(folder):
    os.makedirs(folder + '.tmp', exist_ok=True)
    for r in npreader.records(records, 'val'):
      if os.path.dirname(os.path.abspath(r['key'])) != images:
        continue   # a --more-photos photo: the figures stay comparable across studies
      os.symlink(os.path.abspath(r['key']), os.path.join(folder + '.tmp', os.path.basename(r['key'])))
    os.rename(folder + '.tmp', folder)
  return sorted(os.listdir(folder))


def train(args, records, name):
  job = os.path.join(args.work, 'jobs', name)
  if os.path.isdir(os.path.join(job, 'export')):
    log(f'{name}: {job}/export exists, reused')
    return job, json.load(open(os.path.join(job, 'study.json')))['train_seconds']
  model, loss = name.split('-')
  log(f'{name}: training {args.steps} steps')
  seconds = run(args, ['trainer.task', '--data', records, '--job-dir', job, '--model', model, '--loss', loss,
                       '--epochs', str(args.epochs), '--steps-per-epoch', str(args.steps // args.epochs),
                       '--batch-size', str(args.batch_size), '--width', str(args.width),
                       '--val-images', '0', '--checkpoint-every', '1000000', '--strategy', 'one_device']
                + args.trainer_args.split(),
                os.path.join(args.work, f'train-{name}.log'))
  with open(os.path.join(job, 'study.json'), 'w') as f:
    json.dump({'train_seconds': seconds}, f)
  log(f'{name}: trained and exported in {seconds:.0f} s')
  return job, seconds


def evaluate(args, job, name, photos):
  report = os.path.join(args.work, 'reports', name)
  if not os.path.exists(os.path.join(report, 'summary.json')):
    run(args, ['serving.evaluate', '--model', os.path.join(job, 'export'), '--images', photos,
               '--report', report, '--sample', '24'], os.path.join(args.work, f'evaluate-{name}.log'))
  with open(os.path.join(report, 'summary.json')) as f:
    return json.load(f)


def colour_grid_images(args, job, name, grid_inputs):
  out = os.path.join(args.work, 'grid', name)
  if not os.path.isdir(out):
    run(args, ['serving.colorize', '--model', os.path.join(job, 'export'), '--output', out, '--format', 'png',
               grid_inputs], os.path.join(args.work, f'colorize-{name}.log'))
  return out


def _cell(path, grey=False):
  img = Image.open(path).convert('L' if grey else 'RGB').convert('RGB')
  img.thumbnail((CELL, CELL))
  cell = Image.new('RGB', (CELL, CELL), 'white')
  cell.paste(img, ((CELL - img.width) // 2, (CELL - img.height) // 2))
  return cell


def write_grid(path, names, grid_inputs, outputs):
  columns = ['grey input'] + list(outputs) + ['truth']
  header = 24
  grid = Image.new('RGB', (CELL * len(columns), header + CELL * len(names)), 'white')
  draw = ImageDraw.Draw(grid)
  for c, title in enumerate(columns):
    draw.text((c * CELL + 6, 6), title, fill='black')
  for r, name in enumerate(names):
    src = os.path.join(grid_inputs, name)
    cells = [_cell(src, grey=True)] + [_cell(os.path.join(d, os.path.splitext(name)[0] + '.png'))
                                       for d in outputs.values()] + [_cell(src)]
    for c, cell in enumerate(cells):
      grid.paste(cell, (c * CELL, header + r * CELL))
  grid.save(path, quality=90)


def table(results):
  """Markdown: one row per combination and the grey baseline."""
  head = '| | ' + ' | '.join(label for label, _, _ in METRICS) + ' | train s |'
  lines = [head, '|' + '---|' * (len(METRICS) + 2)]
  for name, (summary, seconds) in results.items():
    for system, label in (('model', name), ('grey_baseline', 'grey baseline (ab = 0)')):
      if system == 'grey_baseline' and name != next(iter(results)):
        continue
      m = dict(summary['metrics'][system])
      m['cf_ratio'] = m['cf_pred'] / m['cf_true']
      cells = [fmt.format(m[key]) for _, key, fmt in METRICS]
      lines.append(f'| {label} | ' + ' | '.join(cells) + f' | {seconds:.0f} |' if system == 'model'
                   else f'| {label} | ' + ' | '.join(cells) + ' | |')
  return lines


def targets(results):
  """ARCHITECTURE.md's quality targets, checked for every combination."""
  grey = next(iter(results.values()))[0]['metrics']['grey_baseline']
  verdict = lambda ok: '**met**' if ok else '**missed**'
  lines = ['Targets (the product\'s default is unet-classification):', '',
           '| | AuC ≥ grey\'s | AuC rebal. ≥ grey + 0.03 | CF within 15 % of truth | PSNR ≥ grey − 0.5 dB |',
           '|---|---|---|---|---|']
  for name, (summary, _) in results.items():
    b = summary['metrics']['model']
    lines.append(f'| {name} | {b["auc"]:.4f} vs {grey["auc"]:.4f}: {verdict(b["auc"] >= grey["auc"])} | '
                 f'{b["auc_rebalanced"]:.4f} vs {grey["auc_rebalanced"]:.4f}: '
                 f'{verdict(b["auc_rebalanced"] >= grey["auc_rebalanced"] + 0.03)} | '
                 f'{b["cf_pred"] / b["cf_true"]:.1%}: {verdict(abs(b["cf_pred"] / b["cf_true"] - 1) <= 0.15)} | '
                 f'{b["psnr"]:.2f} vs {grey["psnr"]:.2f}: {verdict(b["psnr"] >= grey["psnr"] - 0.5)} |')
  return lines


def study_arguments(description, work):
  """The arguments every study shares (the photos, the weights, WORK, the recipe's size), on a new parser."""
  p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--images', default=os.path.join(SHARED, 'data', 'imagenet-sample'))
  p.add_argument('--more-photos', action='append', default=[],
                 help='more training photos (a folder; repeatable), e.g. ../shared/data/more-photos')
  p.add_argument('--weights', default=os.path.join(SHARED, 'weights', 'mobilenet_v2_1.0_224_imagenet.weights.h5'))
  p.add_argument('--work', default=os.path.join(ROOT, work))
  p.add_argument('--image-size', type=int, default=128)
  p.add_argument('--val-fraction', type=float, default=0.1)
  p.add_argument('--width', type=float, default=0.5)
  return p


def check_inputs(args):
  """Exit naming the flag when a study's photos or weights are missing; make their paths absolute."""
  for path, what in [(args.images, '--images'), (args.weights, '--weights')] + [
      (d, '--more-photos') for d in args.more_photos]:
    if not os.path.exists(path):
      sys.exit(f'{path} does not exist: pass {what} (the study expects ../shared beside the repo)')
  args.images, args.weights = os.path.abspath(args.images), os.path.abspath(args.weights)
  args.more_photos = [os.path.abspath(d) for d in args.more_photos]


def main():
  p = study_arguments(__doc__, 'quality-output')
  p.add_argument('--steps', type=int, default=600, help='train steps of each combination')
  p.add_argument('--epochs', type=int, default=4, help='the steps are split into this many epochs')
  p.add_argument('--batch-size', type=int, default=16)
  p.add_argument('--trainer-args', default='', help='more trainer.task flags, the same for every combination')
  p.add_argument('--only', default=DEFAULT_ONLY, help='comma-separated subset of ' + ', '.join(COMBINATIONS))
  p.add_argument('--fresh', action='store_true', help='delete WORK first')
  args = p.parse_args()
  check_inputs(args)
  names = [n for n in args.only.split(',') if n]
  if set(names) - set(COMBINATIONS):
    sys.exit(f'--only: unknown {sorted(set(names) - set(COMBINATIONS))}; choose from {", ".join(COMBINATIONS)}')
  args.images, args.weights = os.path.abspath(args.images), os.path.abspath(args.weights)
  args.more_photos = [os.path.abspath(d) for d in args.more_photos]
  if args.fresh:
    shutil.rmtree(args.work, ignore_errors=True)
  os.makedirs(args.work, exist_ok=True)
  started = time.perf_counter()

  records = os.path.join(args.work, f'records-{args.image_size}' + ('-more' if args.more_photos else ''))
  preprocess(args, records)
  photos = os.path.join(args.work, 'val-photos')
  val = val_photos(records, photos, args.images)
  log(f'val split: {len(val)} photos in {photos}')
  grid_inputs = os.path.join(args.work, 'grid', 'inputs')
  if not os.path.isdir(grid_inputs):
    os.makedirs(grid_inputs)
    for name in val[::max(1, len(val) // GRID_IMAGES)][:GRID_IMAGES] + [n for n in SCENERY if n in val]:
      shutil.copy(os.path.join(photos, name), grid_inputs)
  grid_names = sorted(os.listdir(grid_inputs))

  results, outputs = {}, {}
  for name in names:
    job, seconds = train(args, records, name)
    summary = evaluate(args, job, name, photos)
    results[name] = (summary, seconds)
    outputs[name] = colour_grid_images(args, job, name, grid_inputs)
    m = summary['metrics']['model']
    log(f'{name}: rebalanced AuC {m["auc_rebalanced"]:.4f}, CF {m["cf_pred"]:.2f} '
        f'(truth {m["cf_true"]:.2f}), PSNR {m["psnr"]:.2f}')
  write_grid(os.path.join(args.work, 'grid.jpg'), grid_names, grid_inputs, outputs)

  images = next(iter(results.values()))[0]['images']
  with open(os.path.join(args.work, 'jobs', names[0], 'checkpoints', 'run.json')) as f:
    run_info = json.load(f)
  flags = run_info.get('config', run_info)   # trainer.runinfo's layout; flat in job dirs of before
  trained = ', '.join(f'{k} {flags.get(k)}' for k in ('learning_rate', 'schedule', 'zoom', 'rebalance_mix',
                                                      'fine_tune_from', 'encoder_lr_scale', 'seed'))
  settings = (f'{len(val)} val photos ({images} in colour, evaluated at full resolution), MobileNetV2 embedder '
              f'(real ImageNet weights), image size {args.image_size}, width {args.width}, {args.steps} steps '
              f'of batch {args.batch_size} ({args.steps * args.batch_size} images) per combination; {trained}; '
              f'whole study {(time.perf_counter() - started) / 60:.0f} min')
  doc = ['# Quality study', '', settings, ''] + table(results) + [''] + targets(results) + \
        ['', 'Grid (grey | ' + ' | '.join(outputs) + ' | truth): grid.jpg; per-model reports: reports/*/report.html']
  with open(os.path.join(args.work, 'quality.md'), 'w') as f:
    f.write('\n'.join(doc) + '\n')
  print('\n'.join(doc))
  log(f'wrote {os.path.join(args.work, "quality.md")} and grid.jpg')


if __name__ == '__main__':
  main()
