"""Check one uploaded or read image before it reaches the model, and hand the model bytes it decodes right.

Every front end (CLI, web page, REST API, evaluation) calls `prepare`: it reads only the header to enforce the
byte and pixel limits and to refuse non-images with a reason a person can act on. Plain JPEG and PNG files in
greyscale or RGB pass through untouched, so the common case costs nothing. Anything the serving graph's
decoder would get wrong (EXIF rotation, CMYK, 16-bit, alpha, palettes, GIF, BMP, TIFF, WebP) is decoded once by
the pipeline's decoder (the same one the training data went through) and handed over as a lossless PNG.
What is refused raises errors.BadInput, or errors.TooLarge for what is over a limit.
"""
import dataclasses
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline import decode
from serving import errors

PASS_THROUGH_FORMATS = ('JPEG', 'PNG')
PASS_THROUGH_MODES = ('L', 'RGB')
GREY_MODES = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'F')
COLOUR_CHROMA = 4.0   # mean (max - min) of R, G, B in 8-bit units; scanned B&W prints stay well below it
_ORIENTATION = 0x0112


@dataclasses.dataclass(frozen=True)
class Prepared:
  data: bytes          # what the serving signature gets
  height: int          # the (EXIF-oriented) size of the image, which the output keeps
  width: int
  colour: bool         # the input already had colour: its colour is replaced by one predicted from its L
  converted: bool      # data was re-encoded (see the module docstring)


def has_colour(rgb):
  """Whether an RGB image (uint8 [..., 3]) shows colour rather than greys."""
  rgb = np.asarray(rgb, np.int16)
  return float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean()) > COLOUR_CHROMA


def _sample_colour(img):
  """Whether an RGB image has colour, judged on a small version (JPEG decodes it at 1/8 scale: cheap)."""
  if img.format == 'JPEG':
    img.draft('RGB', (128, 128))
  img.thumbnail((128, 128))
  return has_colour(img.convert('RGB'))


def prepare(data, max_bytes=None, max_pixels=decode.BOMB_GUARD_PIXELS, check_colour=True):
  """Encoded image bytes -> Prepared, or a serving.errors kind saying what is wrong and what to do."""
  if not data:
    raise errors.BadInput('the image is empty (0 bytes): send the bytes of a JPEG, PNG, GIF, BMP, TIFF or WebP file')
  if max_bytes and len(data) > max_bytes:
    raise errors.TooLarge(f'the image has {len(data)} bytes, over the limit of {max_bytes}: send a smaller file '
                          '(or start the server with a larger --max-bytes)')
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)   # our own limit applies below
      img = Image.open(io.BytesIO(data))
      width, height = img.size
      orientation = img.getexif().get(_ORIENTATION, 1)
  except UnidentifiedImageError:
    raise errors.BadInput('not an image: no image format recognises these bytes; send a JPEG, PNG, GIF, BMP, '
                          'TIFF or WebP file') from None
  except Image.DecompressionBombError as e:   # Pillow's own guard, at twice its warning size
    raise errors.TooLarge(f'the image has too many pixels ({e}); the limit is {max_pixels}: scale it down '
                          'first') from None
  except (OSError, SyntaxError, ValueError) as e:
    raise errors.BadInput(f'the image header cannot be read ({type(e).__name__}: {e}); the file may be truncated '
                          'or corrupt') from None
  if width * height > max_pixels:
    raise errors.TooLarge(f'the image is {width}x{height} = {width * height} pixels, over the limit of '
                          f'{max_pixels}: scale it down first (or raise --max-pixels)')
  if img.format in PASS_THROUGH_FORMATS and img.mode in PASS_THROUGH_MODES and orientation == 1:
    try:
      colour = check_colour and img.mode == 'RGB' and _sample_colour(img)
    except (OSError, SyntaxError, ValueError) as e:
      raise errors.BadInput(f'the image cannot be decoded ({type(e).__name__}: {e}); the file may be truncated '
                            'or corrupt') from None
    return Prepared(data, height, width, colour, converted=False)
  try:
    rgb, (height, width) = decode.decode(data, max_pixels=max_pixels)
  except decode.DecodeError as e:
    raise errors.BadInput(f'the image cannot be decoded ({e}); the file may be truncated or corrupt') from None
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format='PNG', compress_level=1)   # lossless; level 1 is fast
  colour = check_colour and img.mode not in GREY_MODES and has_colour(rgb[::4, ::4])
  return Prepared(buf.getvalue(), height, width, colour, converted=True)
