"""python -m serving.colorize: folders, globs, URLs, names, formats, bad files, exit code, clean output."""
import os
import subprocess
import sys

import fsspec
import numpy as np
import pytest

import corpus
import serving_model as sm
from paths import REPO
from serving import colorize, files


@pytest.fixture(scope='module')
def inputs_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('photos')
  corpus.write(root / 'odd')                                  # odd formats and bad files, in a sub-folder
  (root / 'street.jpg').write_bytes(sm.jpeg(sm.grey_photo(240, 360)))
  (root / 'portrait.png').write_bytes(sm.png(sm.grey_photo(300, 200)))
  (root / 'portrait.tif').write_bytes(sm.png(sm.grey_photo(30, 20)))   # same stem as portrait.png
  (root / 'coffee.jpg').write_bytes(sm.jpeg(sm.skimage.data.coffee()))  # already in colour
  (root / 'notes.txt').write_text('not an image name: a folder read skips it')
  return root


def _size(path):
  return sm.decoded(open(path, 'rb').read()).shape[:2]


def test_folder_is_coloured_recursively_with_names_kept(inputs_dir, tmp_path):
  report = colorize.run(sm.colorizer(), [str(inputs_dir), str(tmp_path / 'missing.jpg')], str(tmp_path / 'out'),
                        batch_size=4, progress=False)
  out = tmp_path / 'out'
  written = sorted(os.path.relpath(p, out) for p in report.written)
  good = sorted(f'odd/{os.path.splitext(n)[0]}.jpg' for n in corpus.GOOD)
  assert written == sorted(good + ['street.jpg', 'portrait.jpg', 'portrait_tif.jpg', 'coffee.jpg'])
  assert _size(out / 'street.jpg') == (240, 360) and _size(out / 'portrait.jpg') == (300, 200)
  assert _size(out / 'odd' / 'exif-rotated.jpg') == (80, 40)       # shown upright, as the pipeline decodes it
  assert sm.chroma(sm.decoded((out / 'street.jpg').read_bytes())) > 1.0
  failed = dict(report.failed)
  assert set(failed) == {str(tmp_path / 'missing.jpg')} | {str(inputs_dir / 'odd' / n) for n in corpus.BAD}
  assert failed[str(tmp_path / 'missing.jpg')] == 'no such file'
  assert 'empty' in failed[str(inputs_dir / 'odd' / 'zero-byte.jpg')]
  assert 'not an image' in failed[str(inputs_dir / 'odd' / 'text.JPEG')]
  assert 'corrupt' in failed[str(inputs_dir / 'odd' / 'truncated.jpg')]
  assert 'pixels' in failed[str(inputs_dir / 'odd' / 'bomb.png')]
  assert str(inputs_dir / 'coffee.jpg') in report.had_colour
  text = colorize.summary(report, str(out), 'jpeg')
  assert 'already had colour' in text and f'{len(failed)} input(s) failed' in text


def test_globs_png_and_quality(inputs_dir, tmp_path):
  report = colorize.run(sm.colorizer(), [str(inputs_dir / 'por*.png')], str(tmp_path / 'png'), fmt='png',
                        progress=False)
  assert [os.path.basename(p) for p in report.written] == ['portrait.png'] and not report.failed
  assert open(report.written[0], 'rb').read(4) == b'\x89PNG'
  sizes = {}
  for q in (20, 95):
    (path,) = colorize.run(sm.colorizer(), [str(inputs_dir / 'street.jpg')], str(tmp_path / f'q{q}'), quality=q,
                           progress=False).written
    assert _size(path) == (240, 360)
    sizes[q] = os.path.getsize(path)
  assert sizes[20] < sizes[95] / 2


def test_urls_are_read_and_written_through_fsspec(tmp_path):
  mem = fsspec.filesystem('memory')
  mem.pipe('/bucket/in/a/one.jpg', sm.jpeg(sm.grey_photo(64, 96)))
  mem.pipe('/bucket/in/two.png', sm.png(sm.grey_photo(50, 50)))
  report = colorize.run(sm.colorizer(), ['memory://bucket/in'], 'memory://bucket/out', progress=False)
  assert sorted(report.written) == ['memory://bucket/out/a/one.jpg', 'memory://bucket/out/two.jpg']
  assert sm.decoded(mem.cat('/bucket/out/a/one.jpg')).shape == (64, 96, 3)
  mem.rm('/bucket', recursive=True)


def test_output_names_never_collide():
  names = files.OutputNames('out', '.jpg')
  assert [names(n) for n in ('a.png', 'a.tif', 'a.jpeg', 'a_tif.png', 'b/a.png')] == [
      'out/a.jpg', 'out/a_tif.jpg', 'out/a_jpeg.jpg', 'out/a_tif_png.jpg', 'out/b/a.jpg']


def test_command_line(inputs_dir, tmp_path):
  out = tmp_path / 'cli'
  proc = subprocess.run(
      [sys.executable, '-m', 'serving.colorize', '--model', sm.export_dir(), str(inputs_dir / 'street.jpg'),
       str(inputs_dir / 'coffee.jpg'), str(inputs_dir / 'odd' / 'text.JPEG'), '--output', str(out)],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr                 # one input failed
  assert sorted(os.listdir(out)) == ['coffee.jpg', 'street.jpg']
  lines = proc.stdout.splitlines()
  assert lines[0].startswith(f'Coloured 2 image(s) into {out} (jpeg)')
  assert 'already had colour' in lines[1] and 'coffee.jpg' in lines[1]
  assert lines[2] == '1 input(s) failed:' and 'text.JPEG: not an image' in lines[3]
  assert 'oneDNN' not in proc.stderr and 'cuda' not in proc.stderr.lower()
  assert 'colouring' in proc.stderr and 'FAILED' in proc.stderr     # progress bar and the failure, on stderr
  ok = subprocess.run([sys.executable, '-m', 'serving.colorize', '--model', sm.export_dir(),
                       str(inputs_dir / 'street.jpg'), '--output', str(tmp_path / 'ok')],
                      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0 and np.array_equal(sm.decoded((tmp_path / 'ok' / 'street.jpg').read_bytes()),
                                               sm.decoded((out / 'street.jpg').read_bytes()))


def test_symlinked_photos_in_a_folder_are_read(tmp_path):
  """A folder of links to photos elsewhere is read like a folder of photos (fsspec types links "other")."""
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  (elsewhere / 'a.jpg').write_bytes(sm.jpeg(sm.grey_photo(40, 60)))
  (elsewhere / 'b.png').write_bytes(sm.png(sm.grey_photo(30, 20)))
  links = tmp_path / 'links'
  links.mkdir()
  for name in ('a.jpg', 'b.png'):
    os.symlink(elsewhere / name, links / name)
  os.symlink(elsewhere / 'missing.jpg', links / 'dangling.jpg')   # points at nothing: not an input
  found, missing = files.expand([str(links)])
  assert [s.relative for s in found] == ['a.jpg', 'b.png'] and not missing
  report = colorize.run(sm.colorizer(), [str(links)], str(tmp_path / 'out'), progress=False)
  assert sorted(os.path.basename(p) for p in report.written) == ['a.jpg', 'b.jpg'] and not report.failed
