r"""A seeded corpus of damaged and unusual image files, for checking that a job accounts for every input.

  python -m pipeline.damaged --output DIR [--count 1000] [--seed 0]

Writes COUNT files into DIR (the same bytes for the same seed) and DIR/manifest.json ({file name: kind}): what an
archive's scans, a web crawl or a half-copied bucket hold besides good photos. Kinds:
  truncated       a good file of one of the formats cut at a random point (headers only, or mid-data)
  header_flip     a good file with 1-8 random bit flips in its first 64 bytes
  data_flip       the same in its compressed data (the rest of the file)
  wrong_extension a good file named as another format (.png bytes in a .jpg)
  zero_bytes      an empty file
  huge            a header that declares a huge image (PNG, GIF, BMP, JPEG) over a few bytes of data
  animated        an animated GIF, PNG or WebP (its first frame counts)
  deep            16-bit grey or RGB PNG, 16-bit TIFF
  cmyk            CMYK JPEG or TIFF
  not_an_image    text, HTML, JSON, a PDF or ZIP header, random bytes: named .jpg, .png or .webp
A job given the folder must end with each file either written or on a failure line with a reason; none may crash
it or hang it. benchmarks/damaged.py runs the preprocessing and colouring jobs on it.
"""
import dataclasses
import io
import json
import os
import struct
import zlib
from typing import Optional

import numpy as np
from absl import app
from PIL import Image

from pipeline import cli

FORMATS = {'JPEG': '.jpg', 'PNG': '.png', 'GIF': '.gif', 'BMP': '.bmp', 'TIFF': '.tif', 'WEBP': '.webp'}
KINDS = ('truncated', 'header_flip', 'data_flip', 'wrong_extension', 'zero_bytes', 'huge', 'animated', 'deep',
         'cmyk', 'not_an_image')


def _photo(rng):
  """A small random 'photo': smooth colour gradients and noise, 16..96 px a side."""
  h, w = rng.integers(16, 97, 2)
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  base = rng.uniform(0, 255, (3, 3))
  rgb = np.stack([base[c, 0] + base[c, 1] * x + base[c, 2] * y for c in range(3)], -1) % 256
  return Image.fromarray(np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8))


def _encode(img, fmt, **kw):
  buf = io.BytesIO()
  img.save(buf, fmt, **kw)
  return buf.getvalue()


def _good(rng):
  fmt = list(FORMATS)[rng.integers(len(FORMATS))]
  return _encode(_photo(rng), fmt), fmt


def _flip(data, rng, start, end):
  data = bytearray(data)
  end = min(end, len(data))
  if end > start:
    for _ in range(rng.integers(1, 9)):
      data[rng.integers(start, end)] ^= 1 << int(rng.integers(8))
  return bytes(data)


def _png_chunk(kind, data):
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def _huge(rng):
  side = int(rng.integers(50_000, 65_500))
  fmt = ('PNG', 'GIF', 'BMP', 'JPEG')[rng.integers(4)]
  if fmt == 'PNG':
    data = (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 8, 2, 0, 0, 0))
            + _png_chunk(b'IDAT', zlib.compress(b'\0' * 64)) + _png_chunk(b'IEND', b''))
  elif fmt == 'GIF':
    data = b'GIF89a' + struct.pack('<HHBBB', side, side, 0, 0, 0) + b',' + struct.pack(
        '<HHHHB', 0, 0, side, side, 0) + b'\x02\x02\x4c\x01\x00;'
  elif fmt == 'BMP':
    data = b'BM' + struct.pack('<IHHI', 54 + 16, 0, 0, 54) + struct.pack(
        '<IiiHHIIiiII', 40, side, side, 1, 24, 0, 16, 2835, 2835, 0, 0) + b'\0' * 16
  else:   # a real JPEG's SOF0 height and width rewritten
    data = bytearray(_encode(_photo(rng), 'JPEG'))
    at = data.index(b'\xff\xc0') + 5
    data[at:at + 4] = struct.pack('>HH', side, side)
    data = bytes(data)
  return data, fmt


def _animated(rng):
  fmt = ('GIF', 'PNG', 'WEBP')[rng.integers(3)]
  frames = [_photo(rng).resize((40, 30)) for _ in range(int(rng.integers(2, 5)))]
  return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=80, loop=0), fmt


def _deep(rng):
  img = np.asarray(_photo(rng).convert('L'), np.uint16) * 257
  if rng.integers(3) == 0:
    return _encode(Image.fromarray(img), 'TIFF'), 'TIFF'
  if rng.integers(2):
    return _encode(Image.fromarray(img), 'PNG'), 'PNG'
  # 16-bit RGB: Pillow cannot write it, so the PNG is built by hand (colour type 2, depth 16).
  rgb = np.asarray(_photo(rng), np.uint16) * 257
  h, w = rgb.shape[:2]
  raw = b''.join(b'\0' + rgb[r].astype('>u2').tobytes() for r in range(h))
  return (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, 2, 0, 0, 0))
          + _png_chunk(b'IDAT', zlib.compress(raw)) + _png_chunk(b'IEND', b'')), 'PNG'


def _not_an_image(rng):
  choices = (b'This is not a photo.\n' * 10, b'<!DOCTYPE html><html><body>404 Not Found</body></html>\n',
             json.dumps({'error': 'AccessDenied'}).encode(), b'%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n',
             b'PK\x03\x04\x14\x00\x00\x00\x08\x00', rng.bytes(int(rng.integers(1, 4096))))
  return choices[rng.integers(len(choices))], ('JPEG', 'PNG', 'WEBP')[rng.integers(3)]


def make(kind, rng):
  """(bytes, the format its name will claim) of one file of `kind`."""
  if kind == 'zero_bytes':
    return b'', 'JPEG'
  if kind == 'huge':
    return _huge(rng)
  if kind == 'animated':
    return _animated(rng)
  if kind == 'deep':
    return _deep(rng)
  if kind == 'cmyk':
    fmt = ('JPEG', 'TIFF')[rng.integers(2)]
    return _encode(_photo(rng).convert('CMYK'), fmt), fmt
  if kind == 'not_an_image':
    return _not_an_image(rng)
  data, fmt = _good(rng)
  if kind == 'truncated':
    return data[:int(rng.integers(1, len(data)))], fmt
  if kind == 'header_flip':
    return _flip(data, rng, 0, 64), fmt
  if kind == 'data_flip':
    return _flip(data, rng, 64, len(data)), fmt
  if kind == 'wrong_extension':
    other = [f for f in FORMATS if f != fmt]
    return data, other[rng.integers(len(other))]
  raise ValueError(f'unknown kind {kind!r}; choose one of {", ".join(KINDS)}')


def write(folder, count=1000, seed=0):
  """Write `count` files (kinds in turn, so every kind is there from count 10 on) and manifest.json into folder;
  returns {file name: kind}."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  manifest = {}
  for i in range(count):
    kind = KINDS[i % len(KINDS)]
    data, fmt = make(kind, rng)
    name = f'{i:05d}-{kind}{FORMATS[fmt]}'
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(data)
    manifest[name] = kind
  with open(os.path.join(folder, 'manifest.json'), 'w') as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
  return manifest


@dataclasses.dataclass
class Config:
  output: Optional[str] = cli.flag(None, 'Folder to write the files and manifest.json into.')
  count: int = cli.flag(1000, 'Files to write.', lower=1)
  seed: int = cli.flag(0, 'Seed: the same files for the same seed.')


def main(cfg, argv):
  if len(argv) > 1 or not cfg.output:
    raise app.UsageError('--output DIR is required, and nothing else')
  manifest = write(cfg.output, cfg.count, cfg.seed)
  print(f'wrote {len(manifest)} files into {cfg.output} (manifest.json says which kind each is)')


if __name__ == '__main__':
  cli.run(main, Config)
