"""Inputs and outputs of the command-line front ends: files, folders (recursive), globs, gs:// (any fsspec URL).

Inputs are interpreted as the preprocessing job interprets its --input (pipeline.sources.expand): a folder is
read recursively for image files, a glob or a file is taken as given. Files are listed and read with fsspec,
which needs no Beam or TensorFlow and reaches gs:// through gcsfs.
"""
import dataclasses
import posixpath

import fsspec

from pipeline import sources


@dataclasses.dataclass(frozen=True)
class Source:
  url: str        # what to read (a local path or a URL)
  relative: str   # the path under the input's root, kept for the output name


def expand(specs):
  """Input specs -> (sources in a stable order, [(spec, reason)] for specs that match nothing)."""
  found, missing, seen = [], [], set()
  for spec in specs:
    pattern, root, images_only = sources.expand(spec)
    fs, path = fsspec.core.url_to_fs(pattern)
    _, root_path = fsspec.core.url_to_fs(root or '.')   # absolute, as fs.glob's results are
    try:
      matches = fs.glob(path, detail=True)
    except (OSError, ValueError) as e:
      missing.append((spec, f'cannot list it: {e}'))
      continue
    # fsspec types a local symlink 'other' whatever it points to: a link to a file counts as the file.
    files = sorted(p for p, info in matches.items()
                   if (info.get('type') == 'file' or (info.get('islink') and fs.isfile(p)))
                   and (not images_only or sources.is_image_name(p)))
    if not files:
      kind = ('no image files in this folder' if images_only else
              'no files match this pattern' if any(c in spec for c in '*?[') else 'no such file')
      missing.append((spec, kind))
    for p in files:
      url = p if '://' not in spec else fs.unstrip_protocol(p)
      if url not in seen:
        seen.add(url)
        found.append(Source(url, posixpath.relpath(p, root_path)))
  return found, missing


def read(url):
  with fsspec.open(url, 'rb') as f:
    return f.read()


def write(url, data):
  fs, path = fsspec.core.url_to_fs(url)
  fs.makedirs(posixpath.dirname(path), exist_ok=True)
  with fs.open(path, 'wb') as f:
    f.write(data)


class OutputNames:
  """Output paths under a directory that keep each input's relative name, with the format's extension.

  Two inputs that differ only by extension (photo.png, photo.tif) would collide; the later one keeps its old
  extension in the name (photo_tif.jpg) instead of overwriting the first.
  """

  def __init__(self, output_dir, extension):
    self._dir = output_dir.rstrip('/')
    self._ext = extension
    self._used = set()

  def __call__(self, relative):
    stem, old_ext = posixpath.splitext(relative)
    name = stem + self._ext
    if name in self._used:
      name = f'{stem}_{old_ext.lstrip(".").lower()}{self._ext}'
    n = 2
    while name in self._used:
      name, n = f'{stem}_{n}{self._ext}', n + 1
    self._used.add(name)
    return posixpath.join(self._dir, name)
