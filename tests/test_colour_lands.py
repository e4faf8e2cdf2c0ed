"""Where the colour lands: a served model whose ab output is a known pattern, through every front end.

The pattern model (tests/serving_model.py) predicts a = +40 on the left half of the canvas and -40 on the right,
b = +40 on the top half and -40 on the bottom. Un-letterboxed and upsampled, the boundaries must land where the canvas's centre lines
fall in the photo, within a pixel, for wide, tall, tiny and odd-sized photos. A map shifted by one canvas pixel,
a swapped box or a transposed upsampling moves them by more (the photos are chosen so that it does). The
direct signature, the CLI, the upload endpoint and TF Serving's predict API must return the same bytes.
"""
import base64
import json

import numpy as np
import pytest
import skimage.color

import serving_model as sm
from benchmarks import hostile
from pipeline import letterbox
from serving import app, colorize, exported, server as http_server

SIZE = 64
AB = 40.0
GREY = 119   # L ~ 50: every ab of the pattern is in gamut there
# (height, width): wide, tall, tiny, odd on both sides, and sizes whose box leaves an odd margin on the canvas
PHOTOS = [(60, 300), (300, 60), (3, 2), (5, 7), (201, 133), (97, 389), (389, 97)]


@pytest.fixture(scope='module')
def pattern(tmp_path_factory):
  base = tmp_path_factory.mktemp('pattern-export')
  sm.save_pattern(str(base / '1'), SIZE, AB)
  return exported.Colorizer(str(base))


def expected_boundaries(height, width):
  """Where the canvas's centre lines land in the photo: (column, row) in pixel-edge coordinates."""
  top, left, h, w = letterbox.content_box(height, width, SIZE).numpy()
  return (SIZE // 2 - left) * width / w, (SIZE // 2 - top) * height / h


def boundaries(encoded):
  """(column, row) where a and b change sign: the count of columns (rows) with a > 0 (b > 0), averaged."""
  lab = skimage.color.rgb2lab(sm.decoded(encoded))
  a, b = lab[..., 1], lab[..., 2]
  assert np.abs(a).min() < AB and np.abs(np.abs(a).max() - AB) < 8, 'the pattern did not come through'
  return (a > 0).sum(axis=1).mean(), (b > 0).sum(axis=0).mean()


def photo(height, width):
  return sm.png(np.full((height, width), GREY, np.uint8))


@pytest.mark.parametrize('height, width', PHOTOS)
def test_the_boundary_lands_within_a_pixel(pattern, height, width):
  (out,) = pattern.colorize([photo(height, width)], 'png')
  assert sm.decoded(out).shape == (height, width, 3)
  (col, row), (want_col, want_row) = boundaries(out), expected_boundaries(height, width)
  assert abs(col - want_col) <= 1 and abs(row - want_row) <= 1, ((col, row), (want_col, want_row))


def test_a_one_pixel_shift_would_be_caught():
  # The test photos are large enough that one canvas pixel is more than one photo pixel.
  assert any(width / letterbox.content_box(height, width, SIZE).numpy()[3] > 2 for height, width in PHOTOS)
  assert any(height / letterbox.content_box(height, width, SIZE).numpy()[2] > 2 for height, width in PHOTOS)


def test_grey_rgb_and_grey_photos_colour_alike(pattern):
  grey = np.full((97, 389), GREY, np.uint8)
  one, three = pattern.colorize([sm.png(grey), sm.png(np.stack([grey] * 3, -1))], 'png')
  assert one == three


def test_every_front_end_gives_the_same_bytes(pattern, tmp_path):
  photos = [photo(h, w) for h, w in PHOTOS]
  direct = pattern.colorize(photos, 'png')
  for (height, width), out in zip(PHOTOS, direct):   # batched as one call: still in place
    (col, row), (want_col, want_row) = boundaries(out), expected_boundaries(height, width)
    assert abs(col - want_col) <= 1 and abs(row - want_row) <= 1
  folder = tmp_path / 'in'
  folder.mkdir()
  for i, data in enumerate(photos):
    (folder / f'{i}.png').write_bytes(data)
  report = colorize.run(pattern, [str(folder)], str(tmp_path / 'out'), fmt='png', progress=False)
  assert not report.failed
  cli = [(tmp_path / 'out' / f'{i}.png').read_bytes() for i in range(len(photos))]
  with http_server.Background(app.make_app(app.Service(pattern))) as address:
    upload = [hostile.post(address, '/v1/colorize?format=png', data).body for data in photos]
    answer = hostile.post(address, '/v1/models/colorizer:predict', json.dumps(
        {'signature_name': 'colorize_png', 'instances': [{'b64': base64.b64encode(d).decode()} for d in photos]}
    ).encode())
    predict = [base64.b64decode(p['b64']) for p in answer.json()['predictions']]
  assert cli == direct and upload == direct and predict == direct
