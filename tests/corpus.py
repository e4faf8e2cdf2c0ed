"""Small real image files for the pipeline's tests: good photos, odd formats and bad inputs."""
import io
import struct
import zlib

import numpy as np
import skimage.data
from PIL import Image

# file name -> failure reason, for the inputs that must be rejected
BAD = {
    'zero-byte.jpg': 'empty_file',
    'truncated.jpg': 'corrupt_image',
    'text.JPEG': 'not_an_image',
    'bomb.png': 'too_many_pixels',
}
GOOD = ('png-named.JPEG', 'cmyk.jpg', 'grey.jpg', 'deep16.png', 'rgba.png', 'animated.gif', 'one-pixel.png',
        'exif-rotated.jpg', 'a path, with spaces.jpg', 'tiny.bmp')


def _png_header_only(width, height):
  """A PNG that declares width x height (a decompression bomb) but holds a few bytes of data."""
  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
  ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\0' * 16))
          + chunk(b'IEND', b''))


def _jpeg(image, **kw):
  buf = io.BytesIO()
  image.save(buf, 'JPEG', quality=90, **kw)
  return buf.getvalue()


def write(folder):
  """Write the corpus into folder; returns {name: path}."""
  folder.mkdir(parents=True, exist_ok=True)
  photo = Image.fromarray(skimage.data.chelsea())  # 300 x 451 colour
  files = {}

  def put(name, data):
    path = folder / name
    path.write_bytes(data)
    files[name] = path

  put('zero-byte.jpg', b'')
  put('truncated.jpg', _jpeg(photo)[:3000])
  put('text.JPEG', b'This is not a photo.\n' * 20)
  put('bomb.png', _png_header_only(200_000, 200_000))
  png = io.BytesIO()
  photo.save(png, 'PNG')
  put('png-named.JPEG', png.getvalue())
  put('cmyk.jpg', _jpeg(photo.convert('CMYK')))
  put('grey.jpg', _jpeg(photo.convert('L')))
  deep = Image.fromarray((np.asarray(photo.convert('L'), np.uint16) * 257))
  buf = io.BytesIO()
  deep.save(buf, 'PNG')
  put('deep16.png', buf.getvalue())
  rgba = photo.convert('RGBA')
  rgba.putalpha(Image.linear_gradient('L').resize(photo.size))
  buf = io.BytesIO()
  rgba.save(buf, 'PNG')
  put('rgba.png', buf.getvalue())
  frames = [photo.resize((120, 80)), Image.new('RGB', (120, 80), (0, 0, 255))]
  buf = io.BytesIO()
  frames[0].save(buf, 'GIF', save_all=True, append_images=frames[1:], duration=100, loop=0)
  put('animated.gif', buf.getvalue())
  buf = io.BytesIO()
  Image.new('RGB', (1, 1), (200, 30, 30)).save(buf, 'PNG')
  put('one-pixel.png', buf.getvalue())
  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90 degrees clockwise to display
  put('exif-rotated.jpg', _jpeg(photo.resize((80, 40)), exif=exif.tobytes()))
  put('a path, with spaces.jpg', _jpeg(photo))
  buf = io.BytesIO()
  photo.resize((30, 20)).save(buf, 'BMP')
  put('tiny.bmp', buf.getvalue())
  return files
