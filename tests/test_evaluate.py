"""python -m serving.evaluate: metrics of the model and of the grey baseline against colour photos, reports."""
import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import skimage.color
import skimage.metrics
import tensorflow as tf
from PIL import Image

import serving_model as sm
from paths import REPO
from serving import evaluate
from trainer import abbins, metrics

PHOTOS = {'coffee.png': sm.skimage.data.coffee()[:200, :300], 'astronaut.jpg': sm.skimage.data.astronaut()[::2, ::2]}


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  root = tmp_path_factory.mktemp('truth')
  (root / 'coffee.png').write_bytes(sm.png(PHOTOS['coffee.png']))
  (root / 'astronaut.jpg').write_bytes(sm.jpeg(PHOTOS['astronaut.jpg'], quality=95))
  (root / 'old.jpg').write_bytes(sm.jpeg(sm.grey_photo(100, 100)))     # no colour to compare with
  (root / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
  return root


@pytest.fixture(scope='module')
def result(photos):
  return evaluate.evaluate(sm.colorizer(), [str(photos)], sample=4, progress=False)


def test_every_photo_is_evaluated_skipped_or_failed_with_its_reason(result, photos):
  assert sorted(r['path'] for r in result.rows) == [str(photos / 'astronaut.jpg'), str(photos / 'coffee.png')]
  assert result.skipped == [(str(photos / 'old.jpg'), 'greyscale: there is no colour to compare with')]
  ((path, reason),) = result.failed
  assert path == str(photos / 'broken.png') and reason.startswith('not_an_image')


def test_model_metrics_are_those_of_the_signatures_output(result, photos):
  colorizer = sm.colorizer()
  weights = abbins.rebalance_weights_grid(colorizer.info['ab_histogram']['counts'])
  row = next(r for r in result.rows if r['path'].endswith('coffee.png'))
  truth = PHOTOS['coffee.png']
  out = colorizer.signature('colorize_png')(image_bytes=tf.constant([sm.png(truth)]))['image_bytes'][0]
  pred = tf.io.decode_png(out, channels=3).numpy()
  want = metrics.image_metrics(skimage.color.rgb2lab(pred), skimage.color.rgb2lab(truth), weights)
  for key, value in want.items():
    assert row[f'model_{key}'] == pytest.approx(value, abs=2e-3), key
  # and PSNR against skimage on the very pixels: what was compared is the PNG the model returned
  assert row['model_psnr'] == pytest.approx(skimage.metrics.peak_signal_noise_ratio(truth, pred), abs=0.01)
  assert (row['height'], row['width']) == truth.shape[:2]


def test_grey_baseline_is_the_photos_own_lightness(result):
  row = next(r for r in result.rows if r['path'].endswith('coffee.png'))
  truth = PHOTOS['coffee.png']
  lab = skimage.color.rgb2lab(truth)
  lab[..., 1:] = 0
  grey8 = np.round(skimage.color.lab2rgb(lab) * 255).astype(np.uint8)
  assert row['grey_baseline_psnr'] == pytest.approx(skimage.metrics.peak_signal_noise_ratio(truth, grey8),
                                                    abs=0.02)
  assert row['grey_baseline_cf_pred'] < 0.5
  assert row['grey_baseline_cf_true'] == pytest.approx(row['model_cf_true'])
  s = result.summary()
  assert s['grey_baseline']['delta_cf'] == pytest.approx(s['grey_baseline']['cf_true'] - s['grey_baseline']['cf_pred'])
  assert s['model']['n'] == s['grey_baseline']['n'] == 2


def test_report_files(result, tmp_path):
  evaluate.write_report(str(tmp_path), sm.colorizer(), result)
  doc = json.loads((tmp_path / 'summary.json').read_text())
  assert doc['images'] == 2 and len(doc['skipped']) == 1 and len(doc['failed']) == 1
  assert set(doc['metrics']) == {'model', 'grey_baseline'}
  assert set(metrics.KEYS) | {'delta_cf', 'n'} <= set(doc['metrics']['model'])
  rows = list(csv.DictReader(io.StringIO((tmp_path / 'per_image.csv').read_text())))
  assert len(rows) == 2 and float(rows[0]['model_psnr']) == pytest.approx(result.rows[0]['model_psnr'])
  html = (tmp_path / 'report.html').read_text()
  assert html.count('<img ') == 3 * len(result.samples) == 6       # grey input | model | truth, per sample
  assert 'grey baseline' in html and 'a test model' in html and 'old.jpg' in html and 'broken.png' in html
  for uri in html.split('src="data:image/jpeg;base64,')[1:]:
    Image.open(io.BytesIO(__import__('base64').b64decode(uri.split('"')[0]))).verify()


def test_command_line(photos, tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'serving.evaluate', '--model', sm.export_dir(), '--images',
                         str(photos / '*.*'), '--report', str(tmp_path / 'report')],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr        # broken.png could not be read
  out = proc.stdout
  assert 'WARNING: This model\'s embedder has random weights' in out
  assert '2 image(s) evaluated, 1 skipped (greyscale), 1 failed.' in out
  assert 'PSNR (dB)' in out and 'grey baseline' in out and 'AuC rebalanced' in out
  assert (tmp_path / 'report' / 'report.html').exists()
  assert 'oneDNN' not in proc.stderr and 'evaluating' in proc.stderr
