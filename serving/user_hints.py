"""The user's hints, checked in one place for every front end: the CLI's --hint, JSON (the page, the upload route,
--hints-file) and the tensors of TF Serving's predict (serving/tfserving.py); and padded into the colorize_hints
signature's arrays.

A hint says "this colour here": a point (x, y in 0..1 from the photo's left and top edges, so it does not depend on
the model's canvas), an sRGB colour, and optionally a radius (a share of the photo's long side; 0: the model's
default, trainer/hints.DEFAULT_RADIUS). The CLI takes `X,Y,#RRGGBB[,RADIUS]`, JSON takes
{"x": 0.5, "y": 0.2, "colour": "#3060c0", "radius": 0.02} (also "color", or [r, g, b]).
No TensorFlow here: the CLI parses its flags before loading the model.
"""
import dataclasses
import numbers
import re

import numpy as np

from serving import errors

MAX_HINTS = 100   # per image: dozens work, and the page's users place a few; more is refused, not truncated
OUTSIDE = 'is outside the photo: x and y go from 0 to 1 (left to right, top to bottom)'
PADDING = (-1.0, -1.0)   # the point of no hint in the signature's arrays (arrays pads with it, the model skips it)


class HintError(errors.BadInput):
  """A malformed hint; the message names it and says what is wrong."""


@dataclasses.dataclass(frozen=True)
class Hint:
  x: float
  y: float
  rgb: tuple          # (r, g, b) 0..255: integers from text and JSON, the tensor's own floats from TF Serving
  radius: float = 0.0

  def to_json(self):
    return {'x': self.x, 'y': self.y, 'colour': '#%02x%02x%02x' % self.rgb, 'radius': self.radius}


def _show(value):
  """A value as a message quotes it: a tensor's float32 as %g (1.2, not 1.2000000476837158), the rest as given."""
  if isinstance(value, np.ndarray):
    return '[' + ', '.join(_show(v) for v in value) + ']'
  return f'{value:g}' if isinstance(value, np.floating) else repr(value)


def _is_number(value):
  return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _name(where, field):
  """The name of one of a hint's values in messages. `where` is a string naming the hint ('hints[2]'), or a
  function field -> the name of that very value, as TF Serving's tensors have them ('instances[0].radius[2]';
  fields 'points', 'colours', 'radius')."""
  return where(field) if callable(where) else where


def _prefix(where, field, label):
  """How a message about one value begins: a hint's name and the value's label ('hints[2]: radius 0.5 ...'), or
  the value's own name ('instances[0].radius[2]: 0.5 ...')."""
  return f'{_name(where, field)}: ' + ('' if callable(where) else label)


def check_count(count, where, noun='hints', padded=False):
  """padded: the count is of the signature's arrays (TF Serving's tensors), padding included."""
  if count > MAX_HINTS:
    raise HintError(f'{where}: {count} {noun}, more than the {MAX_HINTS} a photo may have'
                    + (' (padding included)' if padded else ''))


def check_point(x, y, where, padded=False):
  """A point (x, y) inside the photo, or HintError naming it (NaN and infinities are outside too)."""
  if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
    raise HintError(f'{where}: ({_show(x)}, {_show(y)}) {OUTSIDE}'
                    + ('; (%g, %g) is padding' % PADDING if padded else ''))


def parse_colour(value, where):
  """'#RRGGBB', '#RGB' or [r, g, b] (0..255) -> (r, g, b). Lists are 8-bit colours (rounded); a tensor's row
  (numpy) is taken as it is, as the signature would take it. where: as make's."""
  name = _prefix(where, 'colours', 'colour ')
  if isinstance(value, str):
    text = value.strip()
    if re.fullmatch(r'#?[0-9a-fA-F]{6}', text):
      text = text.lstrip('#')
      return tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))
    if re.fullmatch(r'#?[0-9a-fA-F]{3}', text):
      return tuple(int(c * 2, 16) for c in text.lstrip('#'))
  elif isinstance(value, (list, tuple, np.ndarray)) and len(value) == 3 and all(_is_number(c) for c in value):
    if not all(0 <= c <= 255 for c in value):
      raise HintError(f'{name}{_show(value)} is not an sRGB colour: r, g and b go from 0 to 255')
    if isinstance(value, np.ndarray):
      return tuple(float(c) for c in value)
    return tuple(int(round(c)) for c in value)
  raise HintError(f'{name}{_show(value)} is not #RRGGBB (or [r, g, b] in 0..255)')


def make(x, y, colour, radius=0.0, where='hint', padded=False):
  """A checked Hint: x, y inside the photo (0..1), a colour, a radius in 0..0.25. where: a string naming the hint,
  or a function field -> the name of each value (see _name); padded: the values come from the signature's arrays
  (TF Serving's tensors), whose PADDING points the message of a point outside mentions."""
  for field, label, value in (('points', 'x', x), ('points', 'y', y), ('radius', 'radius', radius)):
    if not _is_number(value) or value != value:
      raise HintError(f'{_name(where, field)}: {label} is {_show(value)}, not a number')
  check_point(x, y, _name(where, 'points'), padded)
  if not 0.0 <= radius <= 0.25:
    raise HintError(f'{_prefix(where, "radius", "radius ")}{_show(radius)} is not in 0..0.25 (a share of the '
                    'photo\'s long side; 0: the default)')
  return Hint(float(x), float(y), parse_colour(colour, where), float(radius))


def parse_cli(text, where=None):
  """'X,Y,#RRGGBB[,RADIUS]' (the CLI's --hint) -> Hint."""
  where = where or f'--hint {text}'
  parts = [p.strip() for p in text.split(',')]
  if len(parts) not in (3, 4):
    raise HintError(f'{where}: expected X,Y,#RRGGBB or X,Y,#RRGGBB,RADIUS (e.g. 0.5,0.2,#3060c0)')
  try:
    values = [float(p) for p in parts[:2] + parts[3:]]
  except ValueError:
    raise HintError(f'{where}: X, Y (and RADIUS) must be numbers from 0 to 1') from None
  return make(values[0], values[1], parts[2], values[2] if len(values) == 3 else 0.0, where)


def from_json(value, where='hints'):
  """A JSON list of hint objects -> [Hint], checked (at most MAX_HINTS)."""
  if not isinstance(value, list):
    raise HintError(f'{where}: expected a list of hints like [{{"x": 0.5, "y": 0.2, "colour": "#3060c0"}}]')
  check_count(len(value), where)
  hints = []
  for i, item in enumerate(value):
    at = f'{where}[{i}]'
    if not isinstance(item, dict):
      raise HintError(f'{at}: expected an object with x, y and colour')
    unknown = set(item) - {'x', 'y', 'colour', 'color', 'radius'}
    if unknown or 'x' not in item or 'y' not in item or not ({'colour', 'color'} & set(item)):
      raise HintError(f'{at}: expected x, y, colour (and optionally radius), got {sorted(item)}')
    hints.append(make(item['x'], item['y'], item.get('colour', item.get('color')), item.get('radius', 0.0), at))
  return hints


def arrays(per_image):
  """Lists of Hints, one per image -> the signature's (points [N, K, 2], colours [N, K, 3], radius [N, K]) as
  float32, padded to the longest list with points at (-1, -1), which the model leaves out."""
  n, k = len(per_image), max([len(h) for h in per_image] + [0])
  points = np.full([n, k, 2], PADDING, np.float32)
  colours = np.zeros([n, k, 3], np.float32)
  radius = np.zeros([n, k], np.float32)
  for i, hints in enumerate(per_image):
    for j, h in enumerate(hints):
      points[i, j], colours[i, j], radius[i, j] = (h.x, h.y), h.rgb, h.radius
  return points, colours, radius


def simulate(truth, count, rng, radius=0.01):
  """Zhang et al. 2017's simulated user: `count` hints at uniform random places in the photo (truth: uint8
  [H, W, 3]), each the mean colour of the truth over its square (half side radius x the long side)."""
  height, width = truth.shape[:2]
  half = max(0, int(round(radius * max(height, width))))
  hints = []
  for _ in range(count):
    x, y = rng.uniform(0, 1), rng.uniform(0, 1)
    row, col = min(int(y * height), height - 1), min(int(x * width), width - 1)
    patch = truth[max(0, row - half):row + half + 1, max(0, col - half):col + half + 1].reshape(-1, 3)
    hints.append(Hint(x, y, tuple(int(round(c)) for c in patch.mean(0)), radius))
  return hints
