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


def test_strength_zero_is_paler_than_one_and_none_is_the_exports_default(photos):
  colorizer = sm.colorizer()
  runs = {s: evaluate.evaluate(colorizer, [str(photos)], progress=False, sample=0, strength=s)
          for s in (0.0, 1.0, None, colorizer.default_strength)}
  cf = {s: run.summary()['model']['cf_pred'] for s, run in runs.items()}
  assert cf[0.0] < cf[1.0], cf
  assert runs[None].rows == runs[colorizer.default_strength].rows
  assert runs[1.0].strength == 1.0 and runs[None].strength is None


def test_a_strength_for_a_model_without_the_control_is_refused_with_the_reason(photos, tmp_path):
  sm.save_pattern(str(tmp_path / 'mse' / '1'))
  with pytest.raises(evaluate.exported.ModelError, match='trained with --loss mse'):
    evaluate.evaluate(evaluate.exported.Colorizer(str(tmp_path / 'mse')), [str(photos)], strength=0.5,
                      progress=False)


def test_the_published_protocol_measures_the_centre_crop_and_the_set(photos):
  sets = evaluate.published.SetMeasures(classifier_weights='none', fid_weights='random')
  result = evaluate.evaluate(sm.colorizer(), [str(photos)], progress=False, sample=1, protocol='published',
                             sets=sets)
  assert {(r['height'], r['width']) for r in result.rows} == {(256, 256)}
  full = evaluate.evaluate(sm.colorizer(), [str(photos)], progress=False, sample=0)
  assert [r['path'] for r in result.rows] == [r['path'] for r in full.rows]
  # the 200 x 300 coffee photo is measured on its resized centre (the 256 x 256 astronaut is its own crop)
  coffee = [r['grey_baseline_psnr'] for run in (result, full) for r in run.rows if r['path'].endswith('coffee.png')]
  assert coffee[0] != coffee[1]
  summary = result.set_summary
  # FID of a set against itself is 0 (the truth's); the grey and the coloured sets are elsewhere
  assert summary['fid']['model'] > 0 and summary['fid']['grey_baseline'] > 0
  assert summary['notes'] == ['the classifier test not computed: --classifier-weights none']
  assert 'top1' not in summary
  text = evaluate.table(result.summary(), summary)
  assert 'FID' in text and 'not measured: the classifier test not computed' in text


def test_a_set_measure_that_cannot_be_had_is_one_line_and_the_rest_is_reported(photos, tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'serving.evaluate', '--model', sm.export_dir(), '--images',
                         str(photos / '*.*'), '--protocol', 'published', '--fid-weights', str(tmp_path / 'absent.h5'),
                         '--classifier-weights', 'none', '--strength', '1', '--report', str(tmp_path / 'report')],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  out = proc.stdout
  assert '2 image(s) evaluated' in out and 'PSNR (dB)' in out, proc.stderr
  notes = [line for line in out.splitlines() if line.startswith('not measured: ')]
  assert len(notes) == 2 and 'FID' in notes[1] and 'absent.h5' in notes[1] and '--fid-weights' in notes[1]
  doc = json.loads((tmp_path / 'report' / 'summary.json').read_text())
  assert doc['protocol'] == 'published' and doc['strength'] == 1.0 and len(doc['set_metrics']['notes']) == 2
  assert 'Published protocol' in (tmp_path / 'report' / 'report.html').read_text()


@pytest.mark.shared
def test_the_classifier_test_on_imagenet_photos(shared_imagenet, mobilenet_weights):
  photos = sorted(shared_imagenet.iterdir())[::50][:20]
  sets = evaluate.published.SetMeasures(classifier_weights=str(mobilenet_weights), fid_weights='none')
  result = evaluate.evaluate(sm.colorizer(), [str(p) for p in photos], progress=False, sample=0,
                             protocol='published', sets=sets)
  top1 = result.set_summary['top1']
  assert top1['photos'] == len(result.rows) >= 18
  # the truth is named far better than its grey copy by a real ImageNet classifier (87.8 % top-1 on the sample)
  assert top1['truth'] >= 60 and top1['truth'] > top1['grey_baseline'], top1
