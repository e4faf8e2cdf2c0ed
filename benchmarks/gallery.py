r"""The README's pictures: what an export does to photos it never saw, at two colour strengths, and with hints.

  .venv/bin/python benchmarks/gallery.py --model EXPORT_DIR [--output docs] [--strengths 0.25,0.75]

Photos that ship with scikit-image (so anyone can rerun this, and no training photo of the studies is among them)
are made grey and coloured by `serving.colorize` at each strength; docs/gallery.jpg shows grey | each strength |
truth, a row per photo. docs/hints.jpg shows the hints demo: scikit-image's black-and-white camera photo coloured
automatically, then with the three hints `make demo` places (their places marked). Both are small JPEGs (a few
hundred kB together). It imports no TensorFlow: the colouring is the product's own command line.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ('astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png')
# make demo's three hints: sky blue at the top, green at two places on the field (Makefile, DEMO_HINTS)
HINTS = (('0.5', '0.06', '#8fb3e6'), ('0.75', '0.72', '#5a8f3c'), ('0.92', '0.9', '#5a8f3c'))
CELL = 200
QUALITY = 82


def _skimage(name):
  import skimage
  return os.path.join(os.path.dirname(skimage.__file__), 'data', name)


def _colorize(model, inputs, output, *flags):
  subprocess.run([sys.executable, '-m', 'serving.colorize', '--model', model, '--output', output, '--format', 'png',
                  *flags, *inputs], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))


def _cell(img, size=CELL):
  img = img.convert('RGB')
  img.thumbnail((size, size))
  cell = Image.new('RGB', (size, size), 'white')
  cell.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
  return cell


def _sheet(columns, rows, path, size=CELL):
  font = ImageFont.load_default(size=14)
  header = 26
  sheet = Image.new('RGB', (size * len(columns), header + size * len(rows)), 'white')
  draw = ImageDraw.Draw(sheet)
  for c, title in enumerate(columns):
    draw.text((c * size + size / 2, 6), title, fill='black', font=font, anchor='mt')
  for r, cells in enumerate(rows):
    for c, cell in enumerate(cells):
      sheet.paste(cell, (c * size, header + r * size))
  sheet.save(path, quality=QUALITY, optimize=True)
  return path


def gallery(model, out, strengths, work):
  grey_dir = os.path.join(work, 'grey')
  os.makedirs(grey_dir)
  for name in PHOTOS:   # the input a user has: a black-and-white photo
    Image.open(_skimage(name)).convert('L').save(os.path.join(grey_dir, os.path.splitext(name)[0] + '.png'))
  coloured = {}
  for s in strengths:
    coloured[s] = os.path.join(work, f'strength-{s:g}')
    _colorize(model, [grey_dir], coloured[s], '--strength', str(s))
  rows = []
  for name in PHOTOS:
    stem = os.path.splitext(name)[0] + '.png'
    rows.append([_cell(Image.open(os.path.join(grey_dir, stem)))]
                + [_cell(Image.open(os.path.join(coloured[s], stem))) for s in strengths]
                + [_cell(Image.open(_skimage(name)))])
  return _sheet(['grey input'] + [f'colour strength {s:g}' for s in strengths] + ['truth'], rows,
                os.path.join(out, 'gallery.jpg'))


def hints_demo(model, out, work):
  camera = _skimage('camera.png')
  _colorize(model, [camera], os.path.join(work, 'automatic'))
  flags = [f for x, y, colour in HINTS for f in ('--hint', f'{x},{y},{colour},0.03')]
  _colorize(model, [camera], os.path.join(work, 'hints'), *flags)
  after = Image.open(os.path.join(work, 'hints', 'camera.png')).convert('RGB')
  draw = ImageDraw.Draw(after)
  for x, y, colour in HINTS:   # where the user clicked: a ring in the hint's colour
    cx, cy, r = float(x) * after.width, float(y) * after.height, max(6, after.width // 60)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline='white', width=3)
    draw.ellipse([cx - r + 3, cy - r + 3, cx + r - 3, cy + r - 3], outline=colour, width=2)
  size = 2 * CELL   # one row: larger cells
  return _sheet(['black-and-white photo', 'coloured automatically', 'three hints (rings)'],
                [[_cell(Image.open(camera), size), _cell(Image.open(os.path.join(work, 'automatic', 'camera.png')),
                                                         size), _cell(after, size)]],
                os.path.join(out, 'hints.jpg'), size)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', required=True, help='export directory (a model trained with hints)')
  p.add_argument('--output', default=os.path.join(ROOT, 'docs'))
  p.add_argument('--strengths', default='0.25,0.75', help='two colour strengths, comma-separated')
  args = p.parse_args()
  os.makedirs(args.output, exist_ok=True)
  work = tempfile.mkdtemp(prefix='gallery-')
  try:
    paths = [gallery(args.model, args.output, [float(s) for s in args.strengths.split(',')], work),
             hints_demo(args.model, args.output, work)]
  finally:
    shutil.rmtree(work, ignore_errors=True)
  for path in paths:
    print(f'{path}: {os.path.getsize(path) / 1024:.0f} kB, {Image.open(path).size[0]}x{Image.open(path).size[1]}')


if __name__ == '__main__':
  main()
