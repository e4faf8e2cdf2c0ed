"""Grey photos for the serving benchmarks: scikit-image's astronaut in grey, resized to the size asked."""
import io

import skimage.data
from PIL import Image


def grey(height, width=None):
  return Image.fromarray(skimage.data.astronaut()).convert('L').resize((width or height, height), Image.LANCZOS)


def grey_jpeg(height, width=None):
  buf = io.BytesIO()
  grey(height, width).save(buf, 'JPEG', quality=90)
  return buf.getvalue()


def grey_png(height, width=None):
  buf = io.BytesIO()
  grey(height, width).save(buf, 'PNG')
  return buf.getvalue()
