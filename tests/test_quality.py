"""benchmarks/quality.py end to end on a few ImageNet photos: records, two trained models, their evaluation on
the val split, the table with the grey baseline and the targets, and the image grid."""
import json
import os
import re
import subprocess
import sys

from PIL import Image

from paths import REPO

STUDY = REPO / 'benchmarks' / 'quality.py'


def test_the_study_trains_evaluates_and_reports(shared_imagenet, mobilenet_weights, tmp_path):
  photos = tmp_path / 'photos'
  photos.mkdir()
  more = tmp_path / 'more'    # more training photos: in the job, never in the evaluated val photos
  more.mkdir()
  for name in sorted(os.listdir(shared_imagenet))[:16]:
    os.symlink(shared_imagenet / name, photos / name)
  for name in sorted(os.listdir(shared_imagenet))[16:28]:
    os.symlink(shared_imagenet / name, more / name)
  work = tmp_path / 'study'
  cmd = [sys.executable, str(STUDY), '--images', str(photos), '--weights', str(mobilenet_weights),
         '--work', str(work), '--image-size', '64', '--width', '0.25', '--steps', '4', '--epochs', '2',
         '--batch-size', '4', '--val-fraction', '0.3', '--only', 'unet-classification,beta-mse',
         '--trainer-args', '--zoom 0.8', '--more-photos', str(more)]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

  val = sorted(os.listdir(work / 'val-photos'))
  assert 1 <= len(val) < 16   # the key-hash split of the preprocessing job, read back from the val records
  assert set(val) <= set(os.listdir(photos))
  meta = json.loads((work / 'records-64-more' / 'metadata.json').read_text())
  assert sum(meta['counts'].values()) == 28
  report = (work / 'quality.md').read_text()
  metrics_table = report.split('Targets')[0]
  rows = {line.split('|')[1].strip(): line for line in metrics_table.splitlines() if line.startswith('| ')}
  assert {'unet-classification', 'beta-mse', 'grey baseline (ab = 0)'} <= set(rows)
  for name in ('unet-classification', 'beta-mse'):
    summary = json.loads((work / 'reports' / name / 'summary.json').read_text())
    assert summary['model']['model'] == name.split('-')[0] and summary['model']['loss'] == name.split('-')[1]
    assert summary['model']['step'] == 4
    # The table shows serving.evaluate's own figures.
    assert f"{summary['metrics']['model']['auc_rebalanced']:.4f}" in rows[name]
  run_info = json.loads((work / 'jobs' / 'beta-mse' / 'checkpoints' / 'run.json').read_text())
  assert run_info['config']['zoom'] == 0.8 and run_info['image_size'] == 64   # --trainer-args reached the trainer
  # The unet found the MobileNetV2 weights through the records' metadata.
  unet_run = json.loads((work / 'jobs' / 'unet-classification' / 'checkpoints' / 'run.json').read_text())
  assert unet_run['encoder']['weights'] == str(mobilenet_weights)
  # Each model against the grey baseline (the first model's report holds it, as the study reads it): plain AuC,
  # rebalanced AuC + 0.03, CF within 15 % of truth, PSNR - 0.5. The report's verdicts are the ones its numbers imply.
  grey = json.loads((work / 'reports' / 'unet-classification' / 'summary.json').read_text())['metrics']['grey_baseline']
  number, verdict = r'(-?[\d.]+)', r'\*\*(met|missed)\*\*'
  for name in ('unet-classification', 'beta-mse'):
    m = json.loads((work / 'reports' / name / 'summary.json').read_text())['metrics']['model']
    (line,) = [line for line in report.splitlines() if line.startswith(f'| {name} | 0.')]
    cells = re.fullmatch(rf'\| {name} \| {number} vs {number}: {verdict} \| {number} vs {number}: {verdict} \| '
                         rf'{number}%: {verdict} \| {number} vs {number}: {verdict} \|', line)
    assert cells, line
    ratio = m['cf_pred'] / m['cf_true']
    assert cells.group(1, 2, 4, 5, 9, 10) == (
        f'{m["auc"]:.4f}', f'{grey["auc"]:.4f}', f'{m["auc_rebalanced"]:.4f}', f'{grey["auc_rebalanced"]:.4f}',
        f'{m["psnr"]:.2f}', f'{grey["psnr"]:.2f}') and cells.group(7) + '%' == f'{ratio:.1%}', line
    implied = (m['auc'] >= grey['auc'], m['auc_rebalanced'] >= grey['auc_rebalanced'] + 0.03,
               abs(ratio - 1) <= 0.15, m['psnr'] >= grey['psnr'] - 0.5)
    assert cells.group(3, 6, 8, 11) == tuple('met' if ok else 'missed' for ok in implied), line
  assert 'zoom 0.8' in report and '4 steps of batch 4' in report

  grid = Image.open(work / 'grid.jpg')
  # grey | the two models | truth, one row per grid photo (all the val photos here), under a title row.
  assert grid.size == (4 * 192, 24 + 192 * min(len(val), 8))

  # Run again: every stage's output exists, so nothing is redone.
  again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0 and again.stdout.count('reused') == 3, again.stdout
