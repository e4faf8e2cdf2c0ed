r"""Colour black-and-white photos from the command line, at their own resolution.

  python -m serving.colorize --model EXPORT_DIR INPUT... --output DIR [--format jpeg|png] [--quality Q]
      [--hint X,Y,#RRGGBB[,RADIUS] ...] [--hints-file HINTS.json] [--strength S]

INPUT: files, folders (read recursively for image files), globs and gs:// paths. Outputs keep the inputs'
names and sub-folders, with the format's extension. Images go to the model in batches; reading, checking and
writing overlap with the model's work. A file that cannot be read is reported with its reason and the rest are
still done; the exit code is 1 when any input failed. Inputs that already have colour are coloured from their
lightness (L) like any other, and the summary says which.

Hints (models trained with --hints): each --hint puts a colour at a point of every input (X, Y from 0 to 1, from
the photo's left and top edges; RADIUS a share of its long side). --hints-file is JSON: a list of hints
[{"x": 0.5, "y": 0.2, "colour": "#3060c0", "radius": 0.02}, ...] for every input, or an object mapping an input's
file name (or its path relative to the folder given) to its own list; --hint's are added to each.

--strength (classification models exported with the colour-strength control): 0 the palest, most accurate colours
(each as often as it occurs) to 1 the most vivid; without it, the export's default (colorizer.json's
colour_strength), byte for byte the colours of before.
"""
import dataclasses
import io
import json
import posixpath
import sys
import time
from concurrent import futures
from typing import Optional

from pipeline import cli, quiet

quiet.tensorflow()

from absl import app
from PIL import Image
from tqdm import tqdm

from pipeline import decode
from serving import errors, exported, files, inputs, user_hints

EXTENSIONS = {'jpeg': '.jpg', 'png': '.png'}


@dataclasses.dataclass
class Report:
  written: list = dataclasses.field(default_factory=list)        # output paths
  failed: list = dataclasses.field(default_factory=list)         # (input, reason)
  had_colour: list = dataclasses.field(default_factory=list)     # inputs that were colour already
  seconds: float = 0.0


def _load(source, max_pixels):
  """Read and check one input in a worker thread: a Prepared, or the reason it cannot be coloured."""
  try:
    return inputs.prepare(files.read(source.url), max_pixels=max_pixels)
  except errors.ServingError as e:
    return str(e)
  except OSError as e:   # FileNotFoundError, PermissionError, IsADirectoryError, network errors from gcsfs
    return f'cannot read it: {e.strerror or e}'


def _save(path, image, quality):
  """Write one result (in a worker thread); with a JPEG quality, the lossless result is encoded here."""
  if quality is not None:
    buf = io.BytesIO()
    Image.open(io.BytesIO(image)).save(buf, format='JPEG', quality=quality)
    image = buf.getvalue()
  files.write(path, image)


def hints_for(every=(), per_file=None):
  """source -> its hints: `every` (a list of Hints) plus per_file's list under the source's relative path or
  file name; None when there are no hints at all (the automatic signature)."""
  per_file = per_file or {}
  if not every and not per_file:
    return None
  return lambda source: list(every) + per_file.get(source.relative, per_file.get(posixpath.basename(source.url), []))


def read_hints_file(path):
  """--hints-file: a JSON list (every input) or an object {file name: list} -> (list, {name: list})."""
  try:
    doc = json.loads(files.read(path))
  except OSError as e:
    raise user_hints.HintError(f'{path}: cannot read it: {e.strerror or e}') from None
  except ValueError as e:
    raise user_hints.HintError(f'{path}: not JSON ({e})') from None
  if isinstance(doc, list):
    return user_hints.from_json(doc, path), {}
  if isinstance(doc, dict):
    return [], {name: user_hints.from_json(value, f'{path}: {name}') for name, value in doc.items()}
  raise user_hints.HintError(f'{path}: expected a list of hints, or an object mapping file names to lists')


def run(colorizer, specs, output, fmt='jpeg', quality=None, batch_size=8, max_pixels=decode.BOMB_GUARD_PIXELS,
        progress=True, hints=None, strength=None):
  """Colour every image of `specs` into `output`; returns a Report (nothing is raised for a bad input).

  hints: None, or a function source -> list of user_hints.Hint (hints_for); strength: None (the export's default)
  or a colour strength 0..1 for every image (exported.Colorizer.colorize)."""
  started = time.perf_counter()
  report = Report()
  found, missing = files.expand(specs)
  report.failed.extend(missing)
  names = files.OutputNames(output, EXTENSIONS[fmt])
  # A chosen JPEG quality needs the lossless output re-encoded; otherwise the model's own encoding is final.
  model_fmt = 'png' if quality is not None else fmt
  batches = [found[i:i + batch_size] for i in range(0, len(found), batch_size)]

  def fail(source, reason):
    report.failed.append((source.url, reason))
    bar.write(f'FAILED {source.url}: {reason}', file=sys.stderr)

  with futures.ThreadPoolExecutor(4) as pool, tqdm(total=len(found), unit='img', desc='colouring',
                                                    disable=not progress, file=sys.stderr) as bar:
    def load(batch):
      return [(s, pool.submit(_load, s, max_pixels)) for s in batch]

    writes = []
    upcoming = load(batches[0]) if batches else []
    for k in range(len(batches)):
      current, upcoming = upcoming, (load(batches[k + 1]) if k + 1 < len(batches) else [])  # read ahead
      ready = []
      for source, loaded in current:
        prepared = loaded.result()
        if isinstance(prepared, str):
          fail(source, prepared)
          bar.update()
        else:
          ready.append((source, prepared))
      given = [hints(source) for source, _ in ready] if hints else None
      results = colorizer.colorize([p.data for _, p in ready], model_fmt, given, strength=strength)
      for (source, prepared), result in zip(ready, results):
        if isinstance(result, Exception):
          fail(source, str(result))
        else:
          if prepared.colour:
            report.had_colour.append(source.url)
          path = names(source.relative)
          writes.append((source, path, pool.submit(_save, path, result, quality)))
        bar.update()
    for source, path, written in writes:
      try:
        written.result()
        report.written.append(path)
      except OSError as e:
        fail(source, f'cannot write {path}: {e.strerror or e}')
  report.seconds = time.perf_counter() - started
  return report


def summary(report, output, fmt):
  lines = [f'Coloured {len(report.written)} image(s) into {output} ({fmt}) in {report.seconds:.1f} s'
           + (f', {len(report.written) / report.seconds:.2f} images/s' if report.written else '') + '.']
  if report.had_colour:
    shown = ', '.join(report.had_colour[:5]) + (' ...' if len(report.had_colour) > 5 else '')
    lines.append(f'{len(report.had_colour)} input(s) already had colour (or a tint); it was replaced by colour '
                 f'predicted from their lightness (L): {shown}')
  if report.failed:
    lines.append(f'{len(report.failed)} input(s) failed:')
    lines += [f'  {path}: {reason}' for path, reason in report.failed]
  return '\n'.join(lines)


@dataclasses.dataclass
class Config:
  model: Optional[str] = cli.flag(None, 'Export directory (DIR/<version>/saved_model.pb) or a version directory.',
                                  required=True)
  output: Optional[str] = cli.flag(None, 'Directory (local or gs://) for the colour images.', required=True)
  format: str = cli.flag('jpeg', 'Output format.', choices=list(EXTENSIONS))
  quality: Optional[int] = cli.flag(None, 'JPEG quality 1-95 (default: the model\'s own JPEG encoding).', lower=1,
                                    upper=95)
  batch_size: int = cli.flag(8, 'Images per model call.', lower=1)
  max_pixels: int = cli.flag(decode.BOMB_GUARD_PIXELS, 'Refuse images with more pixels: a decompression-bomb guard '
                             '(Pillow\'s own limit, as the preprocessing job\'s), not the server\'s lower budget per '
                             'request (serving.app --max-pixels).')
  hint: list = cli.flag([], 'X,Y,#RRGGBB[,RADIUS]: this colour at this point of every input (X, Y from 0 to 1 from '
                        'the left and the top; RADIUS a share of the long side). Repeatable. Models trained with '
                        '--hints.')
  hints_file: Optional[str] = cli.flag(None, 'JSON hints: a list for every input, or {file name: list}; see --help.')
  strength: Optional[float] = cli.flag(None, 'The colour strength, 0 (palest, the most accurate) to 1 (most vivid) '
                                       '(default: the model\'s own, its colorizer.json colour_strength). '
                                       'Classification models exported with the colour-strength control.',
                                       lower=0.0, upper=1.0)


def main(cfg, argv):
  if len(argv) < 2:
    raise app.UsageError('give at least one INPUT (file, folder, glob or gs:// path)')
  if cfg.quality is not None and cfg.format != 'jpeg':
    raise app.UsageError('--quality applies to --format jpeg only')
  try:   # the hints are checked before the model loads: a typo fails in a second, not after it
    every = [user_hints.parse_cli(text) for text in cfg.hint]
    per_file = {}
    if cfg.hints_file:
      listed, per_file = read_hints_file(cfg.hints_file)
      every += listed
  except user_hints.HintError as e:
    raise app.UsageError(str(e)) from None
  if len(every) > user_hints.MAX_HINTS:
    raise app.UsageError(f'{len(every)} hints for every input: at most {user_hints.MAX_HINTS}')
  try:
    colorizer = exported.Colorizer(cfg.model)
  except exported.ModelError as e:
    raise app.UsageError(str(e)) from None
  if (every or per_file) and not colorizer.takes_hints:
    raise app.UsageError(f'{colorizer.path} was trained without hints, so it cannot follow --hint or '
                         '--hints-file: train with python -m trainer.task --hints, or leave the hints out')
  if cfg.strength is not None and not colorizer.has_strength:
    raise app.UsageError(str(colorizer.strength_unsupported().at('--strength')))
  report = run(colorizer, argv[1:], cfg.output, cfg.format, cfg.quality, cfg.batch_size, cfg.max_pixels,
               hints=hints_for(every, per_file), strength=cfg.strength)
  print(summary(report, cfg.output, cfg.format))
  return 1 if report.failed else 0


if __name__ == '__main__':
  cli.run(main, Config)
