import numpy as np
import pytest

import corpus
from pipeline import decode


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  return corpus.write(tmp_path_factory.mktemp('corpus'))


@pytest.mark.parametrize('name', sorted(corpus.BAD))
def test_bad_inputs_fail_with_their_reason(files, name):
  with pytest.raises(decode.DecodeError) as e:
    decode.decode(files[name].read_bytes())
  assert e.value.reason == corpus.BAD[name]


@pytest.mark.parametrize('name', corpus.GOOD)
def test_good_inputs_decode_to_rgb_uint8(files, name):
  rgb, size = decode.decode(files[name].read_bytes())
  assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
  assert tuple(size) == rgb.shape[:2]


def test_exif_orientation_is_applied(files):
  rgb, size = decode.decode(files['exif-rotated.jpg'].read_bytes())
  assert rgb.shape[:2] == (80, 40) and size == (80, 40)


def test_sixteen_bit_png_keeps_its_range(files):
  rgb, _ = decode.decode(files['deep16.png'].read_bytes())
  grey = np.asarray(corpus.Image.fromarray(corpus.skimage.data.chelsea()).convert('L'))
  np.testing.assert_array_equal(rgb[..., 0], grey)  # stored as grey * 257: no clipping, no banding


def test_cmyk_is_converted_to_plausible_rgb(files):
  cmyk, _ = decode.decode(files['cmyk.jpg'].read_bytes())
  rgb, _ = decode.decode(files['a path, with spaces.jpg'].read_bytes())
  assert np.abs(cmyk.astype(float) - rgb).mean() < 20


def test_gif_gives_its_first_frame(files):
  rgb, _ = decode.decode(files['animated.gif'].read_bytes())
  assert rgb[..., 2].mean() < 200  # the second frame is pure blue


def test_min_side_decodes_large_jpegs_smaller_but_never_below(files):
  rgb, size = decode.decode(files['a path, with spaces.jpg'].read_bytes(), min_side=100)
  assert size == (300, 451) and min(rgb.shape[:2]) >= 100 and rgb.shape[0] < 300


def test_max_pixels_guard():
  big = corpus._jpeg(corpus.Image.new('RGB', (200, 100)))
  with pytest.raises(decode.DecodeError) as e:
    decode.decode(big, max_pixels=10_000)
  assert e.value.reason == 'too_many_pixels' and '--max-pixels' in str(e.value)
