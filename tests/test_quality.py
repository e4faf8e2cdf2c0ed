"""benchmarks/quality.py end to end on a few ImageNet photos: records, two trained models, their evaluation on
the val split, the table with the grey baseline and the targets, and the image grid."""
import json
import os
import re
import subprocess
import sys

from PIL import Image

from conftest import REPO

STUDY = REPO / 'benchmarks' / 'quality.py'


def test_the_study_trains_evaluates_and_reports(shared_imagenet, mobilenet_weights, tmp_path):
  photos = tmp_path / 'photos'
  photos.mkdir()
  for name in sorted(os.listdir(shared_imagenet))[:16]:
    os.symlink(shared_imagenet / name, photos / name)
  work = tmp_path / 'study'
  cmd = [sys.executable, str(STUDY), '--images', str(photos), '--weights', str(mobilenet_weights),
         '--work', str(work), '--image-size', '64', '--width', '0.25', '--steps', '4', '--epochs', '2',
         '--batch-size', '4', '--val-fraction', '0.3', '--only', 'fusion-classification,beta-mse',
         '--trainer-args', '--zoom 0.8']
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

  val = sorted(os.listdir(work / 'val-photos'))
  assert 1 <= len(val) < 16   # the key-hash split of the preprocessing job, read back from the val records
  report = (work / 'quality.md').read_text()
  metrics_table = report.split('Targets')[0]
  rows = {line.split('|')[1].strip(): line for line in metrics_table.splitlines() if line.startswith('| ')}
  assert {'fusion-classification', 'beta-mse', 'grey baseline (ab = 0)'} <= set(rows)
  for name in ('fusion-classification', 'beta-mse'):
    summary = json.loads((work / 'reports' / name / 'summary.json').read_text())
    assert summary['model']['model'] == name.split('-')[0] and summary['model']['loss'] == name.split('-')[1]
    assert summary['model']['step'] == 4
    # The table shows serving.evaluate's own figures.
    assert f"{summary['metrics']['model']['auc_rebalanced']:.4f}" in rows[name]
  run_info = json.loads((work / 'jobs' / 'beta-mse' / 'checkpoints' / 'run.json').read_text())
  assert run_info['zoom'] == 0.8 and run_info['image_size'] == 64   # --trainer-args reached the trainer
  targets = [line for line in report.splitlines() if line.startswith('| fusion-classification | 0.')]
  # Rebalanced AuC against the grey baseline's, CF against truth, dCF against fusion-mse (absent from this run).
  assert len(targets) == 1 and re.search(r'\*\*(met|missed)\*\* \| [\d.]+%: \*\*(met|missed)\*\* \| [\d.]+ '
                                         r'\(fusion-mse not in this run\)', targets[0]), report
  assert re.search(r'\| beta-mse \| .* \| n/a \(an MSE model\) \|', report)
  assert 'zoom 0.8' in report and '4 steps of batch 4' in report

  grid = Image.open(work / 'grid.jpg')
  # grey | the two models | truth, one row per grid photo (all the val photos here), under a title row.
  assert grid.size == (4 * 192, 24 + 192 * min(len(val), 8))

  # Run again: every stage's output exists, so nothing is redone.
  again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0 and again.stdout.count('reused') == 3, again.stdout
