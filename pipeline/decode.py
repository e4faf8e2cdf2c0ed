"""Decode any common photo file to sRGB uint8, or say exactly why not.

Pillow reads JPEG (incl. CMYK and greyscale), PNG (incl. 16-bit and alpha), GIF (first frame), BMP, TIFF and
WebP; EXIF orientation is applied; embedded ICC profiles are converted to sRGB. Every failure is a
`DecodeError` with a short machine-readable reason (the failures report and Beam counters group by it).
"""
import functools
import io
import warnings

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# Pillow's own decompression-bomb threshold: a guard against files that claim more pixels than any photo, for
# the preprocessing job and the CLIs. The server's per-request budget is lower (serving.service.REQUEST_MAX_PIXELS).
BOMB_GUARD_PIXELS = 89_478_485
_SRGB = ImageCms.createProfile('sRGB')


class DecodeError(ValueError):
  def __init__(self, reason, detail):
    super().__init__(f'{reason}: {detail}')
    self.reason = reason
    self.detail = detail


@functools.lru_cache(maxsize=64)
def _to_srgb(icc, mode):
  """A cached transform from an embedded ICC profile to sRGB; None when it is sRGB already or unusable.

  Photo collections repeat a handful of profiles (a quarter of ImageNet's JPEGs carry one, mostly sRGB), and
  building a transform costs more than decoding the image.
  """
  try:
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if mode == 'RGB' and 'srgb' in ImageCms.getProfileDescription(profile).lower():
      return None
    return ImageCms.buildTransform(profile, _SRGB, mode, 'RGB')
  except (ImageCms.PyCMSError, OSError):
    return None  # a broken profile: the pixels are still usable as they are, as browsers show them


def _to_rgb(img):
  """Any Pillow mode -> 'RGB', keeping the full range of 16-bit and float images."""
  if img.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
    a = np.asarray(img, dtype=np.float64)
    top = 65535.0 if (img.mode.startswith('I;16') or a.max() > 255) else 255.0
    return Image.fromarray(np.round(np.clip(a, 0, top) * (255.0 / top)).astype(np.uint8)).convert('RGB')
  if img.mode == 'F':
    a = np.asarray(img, dtype=np.float64)
    top = 1.0 if a.max() <= 1.0 else 255.0
    return Image.fromarray(np.round(np.clip(a / top, 0, 1) * 255).astype(np.uint8)).convert('RGB')
  if img.mode in ('RGBA', 'LA', 'PA') or (img.mode == 'P' and 'transparency' in img.info):
    # Transparent areas carry arbitrary colour: composite on white, as viewers show them.
    rgba = img.convert('RGBA')
    white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert('RGB')
  return img.convert('RGB')


def decode(data, max_pixels=BOMB_GUARD_PIXELS, min_side=None):
  """Encoded bytes -> (rgb uint8 [H, W, 3], (height, width) of the oriented source).

  `min_side`: the caller needs no more than this many pixels on the shorter side, which lets the JPEG decoder
  scale down by 1/2, 1/4 or 1/8 while decoding (much faster for large photos; never below `min_side`).
  """
  if not data:
    raise DecodeError('empty_file', 'the file has 0 bytes')
  try:
    with warnings.catch_warnings():
      # Pillow warns of what it repairs (truncated TIFF reads, odd metadata): the image decodes or a
      # DecodeError says why not, so the warnings would only litter the job's terminal.
      warnings.simplefilter('ignore')
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      img = Image.open(io.BytesIO(data))
      w, h = img.size
      if w * h > max_pixels:
        raise DecodeError('too_many_pixels', f'{w}x{h} = {w * h} pixels is over the limit of {max_pixels} '
                          '(decompression bomb guard; raise --max-pixels to accept it)')
      if w < 1 or h < 1:
        raise DecodeError('empty_image', f'{w}x{h}')
      img.seek(0)  # first frame of animations
      orientation = img.getexif().get(0x0112, 1)
      oriented = (h, w) if orientation in (1, 2, 3, 4) else (w, h)
      if min_side and img.format == 'JPEG' and img.mode in ('RGB', 'L', 'CMYK', 'YCbCr'):
        img.draft(img.mode, (min_side, min_side))
      img.load()
      icc = img.info.get('icc_profile')
      if icc and img.mode in ('RGB', 'CMYK'):
        transform = _to_srgb(icc, img.mode)
        if transform is not None:
          img = ImageCms.applyTransform(img, transform)
      img = ImageOps.exif_transpose(img)
      rgb = np.asarray(_to_rgb(img))
  except DecodeError:
    raise
  except UnidentifiedImageError as e:
    raise DecodeError('not_an_image', 'no image format recognises the content') from e
  except Image.DecompressionBombError as e:
    raise DecodeError('too_many_pixels', str(e)) from e
  except Image.DecompressionBombWarning as e:
    raise DecodeError('too_many_pixels', str(e)) from e
  except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:
    # Pillow reports truncated and corrupt data as OSError/SyntaxError/ValueError depending on the format.
    raise DecodeError('corrupt_image', f'{type(e).__name__}: {e}') from e
  return rgb, oriented
