"""What the job reads: input paths and patterns, ImageNet labels, split assignment, the sample photos.

Paths go through Beam's FileSystems, so local folders, globs and gs:// prefixes behave alike.
"""
import functools
import hashlib
import importlib.resources
import itertools
import json
import os
import re
import zlib
from typing import NamedTuple, Optional

class Source(NamedTuple):
  """One input: `data` is None for files (read by the worker, so only paths travel through the group-by)."""
  key: str
  relative_key: str
  synset: str
  label: int
  data: Optional[bytes] = None


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.tif', '.tiff', '.webp')
_GLOB_CHARS = re.compile(r'[*?\[]')
_SYNSET = re.compile(r'(?<![A-Za-z0-9])(n\d{8})(?![0-9])')

# Colour photos that scikit-image ships inside its wheel: the default input, so the job runs offline.
SAMPLE_PHOTOS = ('astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png',
                 'motorcycle_right.png', 'hubble_deep_field.jpg', 'retina.jpg', 'ihc.png', 'color.png')


def sample_photos():
  root = importlib.resources.files('skimage') / 'data'
  return [str(root / name) for name in SAMPLE_PHOTOS]


def expand(spec):
  """An --input value -> (Beam file pattern, root used for relative keys, whether to keep image files only).

  A folder (local, or a gs:// prefix without wildcards that is not a file) is read recursively and only files
  with image extensions are taken; a glob or a single file is taken exactly as given.
  """
  if _GLOB_CHARS.search(spec):
    root = _GLOB_CHARS.split(spec, 1)[0].rsplit('/', 1)[0]
    return spec, root, False
  is_dir = os.path.isdir(spec) if '://' not in spec else (
      spec.endswith('/') or not os.path.splitext(spec)[1])
  if is_dir:
    root = spec.rstrip('/')
    return root + '/**', root, True
  return spec, os.path.dirname(spec), False


LISTED_CHUNK = 1000  # paths per listed chunk: a flat folder of 1.28 M files is 1,281 elements, not 1.28 M


def child_patterns(root):
  """A folder -> one pattern per immediate sub-folder (`sub/**`, str) and its own files in chunks (bytes).

  So that the folder is listed in parallel, a sub-folder per element, rather than by one worker: ImageNet's
  train folder has 1,000 synset folders of ~1,300 files. gs:// is listed with a delimiter (one request per
  1,000 entries at this level only); Beam's own match of `gs://.../*` would list every object below. The
  folder's own files go out as they are listed, in compressed chunks (`listed_paths` reads one), never as one
  element each: the reshuffle after this holds its elements in a local runner's memory (~1 kB per element
  before, BUILD_NOTES.md), and a flat folder may hold every input.
  """
  folders = []
  if root.startswith('gs://'):
    from apache_beam.io.gcp import gcsio
    bucket, prefix = gcsio.parse_gcs_path(root.rstrip('/') + '/', object_optional=True)
    listing = gcsio.GcsIO().client.list_blobs(bucket, prefix=prefix, delimiter='/')
    files = (f'gs://{bucket}/{blob.name}' for blob in listing if not blob.name.endswith('/'))
    yield from _chunks(files)
    folders = [f'gs://{bucket}/{p}' for p in sorted(listing.prefixes)]  # known once the pages are read
  else:
    with os.scandir(root) as entries:
      def files():
        for e in entries:
          if e.is_dir():
            folders.append(carried(e.path) + '/')
          else:
            yield e.path
      yield from _chunks(files())
  yield from (f + '**' for f in sorted(folders))


def carried(path):
  """A listed path as Beam can carry it. A local file name that is not UTF-8 comes from the listing with its
  undecodable bytes as surrogates (os.fsdecode), which no Beam coder encodes (the job would stop at its first
  such file): each is written as a NUL and two hex digits instead. No file or object name holds a NUL, so the
  form is unambiguous; uncarried() gives the listing's path back. Valid names are themselves."""
  if path.isascii():
    return path
  try:
    path.encode('utf-8')
    return path
  except UnicodeEncodeError:
    return ''.join(f'\0{ord(c) - 0xDC00:02x}' if 0xDC80 <= ord(c) <= 0xDCFF else c for c in path)


def uncarried(path):
  """The listing's path of a carried() one (surrogates for the bytes that are not UTF-8)."""
  if '\0' not in path:
    return path
  return re.sub('\0([0-9a-f]{2})', lambda m: chr(0xDC00 + int(m.group(1), 16)), path)


def _chunks(paths):
  paths = iter(paths)
  while chunk := list(itertools.islice(paths, LISTED_CHUNK)):
    yield zlib.compress(json.dumps(chunk).encode(), 1)


def listed_paths(chunk):
  """The paths of a chunk that child_patterns listed (carried())."""
  return [carried(p) for p in json.loads(zlib.decompress(chunk))]


def is_image_name(path):
  return path.lower().endswith(IMAGE_EXTENSIONS)


@functools.lru_cache(maxsize=1)
def imagenet_synsets():
  """The 1000 ILSVRC-2012 WordNet ids in class-index order (Keras and TFDS order); shipped by TFDS."""
  text = (importlib.resources.files('tensorflow_datasets') / 'datasets' / 'imagenet2012' / 'labels.txt')
  synsets = text.read_text().split()
  return {s: i for i, s in enumerate(synsets)}


def label_of(path):
  """(synset, class index) from an ImageNet-style folder or file name, else ('', -1)."""
  found = _SYNSET.findall(path)
  if not found:
    return '', -1
  synset = found[-1]  # the innermost: n01440764/n01440764_10026.JPEG and n01440764_tench.JPEG both work
  return synset, imagenet_synsets().get(synset, -1)


def split_of(relative_key, val_fraction):
  """'val' or 'train', from a hash of the key relative to its input root: stable across runs and machines."""
  digest = hashlib.sha256(relative_key.encode('utf-8')).digest()
  return 'val' if int.from_bytes(digest[:8], 'big') / 2.0 ** 64 < val_fraction else 'train'
