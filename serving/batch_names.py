"""Where the colouring job (serving/batch.py) writes each input: its relative name with the format's extension,
never outside --output, never over another input's output.

Names are input too. A bucket may hold objects named `photos/../../x.png` or `photos//x.png` (GCS allows any UTF-8
name), a disk may hold names with a newline or bytes that are not UTF-8; normalising such a name would move its
output elsewhere (up and out of --output, or onto another input's name), so each is refused with reason
`unsafe_name`. The name below the input folder is taken literally from the listing (`source`), never
normalised (a name that is not UTF-8 arrives as pipeline.sources.carried writes it).

Two inputs whose outputs would have one name (photo.png and photo.tif -> photo.jpg; the same relative path under
two --input folders) are in one work unit, since the unit is a hash of the output name (`unit_key`); there the
first by path keeps the name and the others become failure lines (`name_collision`) that name it. So the outcome
depends on the inputs alone, never on the runner or the order of a listing, and nothing is ever overwritten.
TF-free and Beam-free: pure functions of names.
"""
import posixpath
import re
import unicodedata

from pipeline import resume, sources

UNSAFE = 'unsafe_name'
COLLISION = 'name_collision'


def source(path, root):
  """The colouring job's Source of a listed path (job.file_units' make_source): the path below its input root as
  the listing gave it. A path outside the root (a local glob without a folder part, e.g. `x*.png`, whose root
  sources.expand takes as `x`) keeps its file name."""
  if root and path.startswith(root + '/'):
    relative = path[len(root) + 1:]
  elif root:
    relative = posixpath.basename(path)
  else:
    relative = path
  return sources.Source(path, relative, '', -1)


def unsafe(relative):
  """Why an input's relative name cannot name an output under --output, or None when it can."""
  if '\0' in relative:   # sources.carried's mark of bytes that are not UTF-8
    return 'its name is not valid UTF-8'
  if any(unicodedata.category(c) == 'Cc' for c in relative):   # newline, tab, NUL, escape, DEL...
    return 'its name holds a control character (a newline, a tab, ...)'
  if relative.startswith('/'):
    return 'its name below the input folder begins with "/" (an absolute path, or "//" in an object name)'
  parts = relative.split('/')
  if '..' in parts:
    return 'its name has a ".." part, which would write outside --output'
  if '' in parts or '.' in parts:
    return 'its name has an empty or "." part ("//" or "/./" in an object name)'
  if parts[0] == resume.WORK:
    return f'it is under a folder named {resume.WORK}, the job\'s own work area in --output'
  return None


def shown(relative):
  """A name as a failure line shows it: Python's escapes for what is not printable (\\n), bytes that are not
  UTF-8 as \\xNN."""
  return re.sub(r'\\udc([89a-f][0-9a-f])', r'\\x\1', repr(sources.uncarried(relative))[1:-1])


def output_name(relative, extension):
  """The output's path below --output: the relative name with the format's extension (as the CLI names it)."""
  return posixpath.splitext(relative)[0] + extension


def unit_key(extension, src):
  """What a Source's work unit is a hash of: its output name (its relative name when that is unsafe)."""
  return src.relative_key if unsafe(src.relative_key) else output_name(src.relative_key, extension)


def failure(src, reason, detail):
  return {'path': src.key, 'reason': reason, 'detail': detail}


def assign(srcs, extension):
  """A unit's Sources (sorted by key) -> per Source, in order: (Source, output name, None) or (Source, None,
  failure line)."""
  owners = {}
  out = []
  for src in srcs:
    why = unsafe(src.relative_key)
    if why:
      out.append((src, None, failure(src, UNSAFE, f'{shown(src.relative_key)}: {why}; rename it')))
      continue
    name = output_name(src.relative_key, extension)
    if name not in owners:
      owners[name] = src.key
      out.append((src, name, None))
      continue
    what = 'the same file, listed twice by --input' if owners[name] == src.key else owners[name]
    out.append((src, None, failure(src, COLLISION, f'its output {name} is that of {what}, which keeps it (the '
                                   'first by path); rename one of them, or colour them into separate --output '
                                   'folders')))
  return out
