r"""Colour black-and-white photos from the command line, at their own resolution.

  python -m serving.colorize --model EXPORT_DIR INPUT... --output DIR [--format jpeg|png] [--quality Q]

INPUT: files, folders (read recursively for image files), globs and gs:// paths. Outputs keep the inputs'
names and sub-folders, with the format's extension. Images go to the model in batches; reading, checking and
writing overlap with the model's work. A file that cannot be read is reported with its reason and the rest are
still done; the exit code is 1 when any input failed. Inputs that already have colour are coloured from their
lightness (L) like any other, and the summary says which.
"""
import dataclasses
import io
import sys
import time
from concurrent import futures

from pipeline import quiet

quiet.tensorflow()

from absl import app, flags
from PIL import Image
from tqdm import tqdm

from pipeline import decode
from serving import files, inputs, model

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
  except inputs.InputError as e:
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


def run(colorizer, specs, output, fmt='jpeg', quality=None, batch_size=8, max_pixels=decode.DEFAULT_MAX_PIXELS,
        progress=True):
  """Colour every image of `specs` into `output`; returns a Report (nothing is raised for a bad input)."""
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
      for (source, prepared), result in zip(ready, colorizer.colorize([p.data for _, p in ready], model_fmt)):
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


FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags; defined only when run as a program, so that importing this module (tests,
  other tools) cannot collide with another module's flags of the same name (--model, --batch-size)."""
  flags.DEFINE_string('model', None, 'Export directory (DIR/<version>/saved_model.pb) or a version directory.',
                      required=True)
  flags.DEFINE_string('output', None, 'Directory (local or gs://) for the colour images.', required=True)
  flags.DEFINE_enum('format', 'jpeg', list(EXTENSIONS), 'Output format.')
  flags.DEFINE_integer('quality', None, 'JPEG quality 1-95 (default: the model\'s own JPEG encoding).',
                       lower_bound=1, upper_bound=95)
  flags.DEFINE_integer('batch-size', 8, 'Images per model call.', lower_bound=1)
  flags.DEFINE_integer('max-pixels', decode.DEFAULT_MAX_PIXELS, 'Refuse images with more pixels.')


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('give at least one INPUT (file, folder, glob or gs:// path)')
  if FLAGS.quality is not None and FLAGS.format != 'jpeg':
    raise app.UsageError('--quality applies to --format jpeg only')
  try:
    colorizer = model.Colorizer(FLAGS.model)
  except model.ModelError as e:
    raise app.UsageError(str(e)) from None
  report = run(colorizer, argv[1:], FLAGS.output, FLAGS.format, FLAGS.quality, FLAGS['batch-size'].value,
               FLAGS['max-pixels'].value)
  print(summary(report, FLAGS.output, FLAGS.format))
  return 1 if report.failed else 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
