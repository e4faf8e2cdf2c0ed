r"""Colour a collection with Apache Beam (locally, or on Dataflow): the exported model on every photo of folders,
globs or gs:// prefixes, at the scale of an archive.

  python -m serving.batch --model EXPORT_DIR --input PATH|GLOB|gs://... [--input ...] --output DIR \
      [--format jpeg|png] [--strength S] [--hint X,Y,#RRGGBB[,RADIUS] ...] [--hints-file HINTS.json] \
      [--batch-size 8] [--unit-size 256] [--max-pixels N] [--runner DirectRunner|DataflowRunner] \
      [any Beam / Dataflow option]

Writes each input's colour image under DIR with the input's path below its --input folder and the format's
extension (as `python -m serving.colorize` names it, with the same bytes), failures.jsonl (one line per input
that has no image: path, reason, detail; reasons as the preprocessing job's: empty_file, not_an_image,
corrupt_image, too_many_pixels, unreadable, ..., and unsafe_name, name_collision, model_refused, model_failed,
out_of_memory, unwritable) and summary.json last (counts, failures by reason, the model, the strength, the job's
command). --input is read as pipeline.preprocess reads it (a folder recursively for image files; a glob or a
file as given); the hints are the CLI's (--hint for every input, --hints-file for every input or per file name).

Flags it does not define go to Beam's PipelineOptions unchanged. Without --runner it runs here on DirectRunner
(--direct_num_workers N --direct_running_mode multi_processing: N worker processes, each loading the model once);
with --runner DataflowRunner --project P --region R --temp_location gs://... it runs on Dataflow, this package
installed on the workers from its setup.py (added for you), --input, --model and --output then gs:// paths.

The scale contract is the preprocessing job's (README.md, Preprocessing): work units of about --unit-size inputs,
memory flat in the number of inputs, a killed job finished by the same command (it redoes at most the units in
progress and writes the same bytes), another command on the same --output refused with the difference named.
The graph is in serving/batch_job.py (workers unpickle its classes by module name, not __main__).
"""
import dataclasses
import hashlib
import json
import os
import posixpath
import sys
import time
from typing import Optional

from pipeline import quiet

tf = quiet.tensorflow()  # before Beam imports it, so its start-up notices stay off the terminal

import apache_beam as beam
from absl import app, logging
from apache_beam.io.filesystems import FileSystems

from pipeline import cli, cloud, config, decode, launch, resume, sources
from serving import batch_job, colorize, exported, user_hints


@dataclasses.dataclass
class Config:
  model: Optional[str] = cli.flag(None, 'Export directory (DIR/<version>/saved_model.pb: the highest version) or a '
                                  'version directory; local or gs:// (Dataflow: gs://).', required=True)
  inputs: list = config.bytes_flag([], 'Folder (recursive, image files), glob, file or gs:// prefix; repeatable.',
                                   name='input')
  output: Optional[str] = cli.flag(None, 'Directory (local or gs://) for the colour images, failures.jsonl and '
                                   'summary.json.', required=True)
  format: str = config.bytes_flag('jpeg', 'Output format.', choices=list(colorize.EXTENSIONS))
  strength: Optional[float] = config.bytes_flag(
      None, 'Colour strength for every input: 0 palest (most accurate) to 1 most vivid, through the export\'s '
      'colorize_strength signatures (classification models). Default: the export\'s own strength (the bytes of '
      'python -m serving.colorize).', lower=0.0, upper=1.0)
  hint: list = cli.flag([], 'X,Y,#RRGGBB[,RADIUS]: this colour at this point of every input (as serving.colorize '
                        '--hint). Repeatable. Models trained with --hints.')
  hints_file: Optional[str] = cli.flag(None, 'JSON hints: a list for every input, or {file name or path below its '
                                       '--input folder: list} (as serving.colorize --hints-file).')
  batch_size: int = config.bytes_flag(8, 'Images per model call (formed within a work unit).', lower=1)
  unit_size: int = config.bytes_flag(256, 'Inputs per work unit: the grain that a killed job redoes (at most one '
                                     'unit per worker in progress).', lower=1)
  max_pixels: int = config.bytes_flag(decode.BOMB_GUARD_PIXELS, 'Refuse images with more pixels (decompression '
                                      'bomb guard, as serving.colorize and the preprocessing job).')
  # Fixed when the job starts (resolve): the model's identity, its version directory, the hints as JSON.
  model_sha256: Optional[str] = dataclasses.field(default=None, metadata={config.OUTPUT_BYTES: True})
  model_path: Optional[str] = None
  hints: Optional[list] = dataclasses.field(default=None, metadata={config.OUTPUT_BYTES: 'fingerprint'})


def parse(argv):
  """(config, the arguments for Beam): this module's flags, parsed with a FlagValues of their own each call."""
  cfg, rest = cli.parse(Config, argv, known_only=True)
  return cfg, rest[1:]


def _model(model_dir, fmt, with_hints, strength):
  """(version directory, sha256 of its graph and variable index) of an export, read without loading it; the
  signature the job will call must be there."""
  from tensorflow.core.protobuf import saved_model_pb2
  try:
    path, _ = exported.find_version(model_dir)
    with tf.io.gfile.GFile(posixpath.join(path, 'saved_model.pb'), 'rb') as f:
      graph = f.read()
    index = posixpath.join(path, 'variables', 'variables.index')   # holds a checksum of each variable's value
    weights = b''
    if tf.io.gfile.exists(index):
      with tf.io.gfile.GFile(index, 'rb') as f:
        weights = f.read()
  except exported.ModelError as e:
    raise app.UsageError(f'--model {e}') from None
  except tf.errors.OpError as e:
    raise cloud.PathError('--model ' + cloud.explain(model_dir, e)) from None
  signatures = set(saved_model_pb2.SavedModel.FromString(graph).meta_graphs[0].signature_def)
  needed = exported.COLOURING[with_hints, strength is not None][fmt]
  if needed not in signatures:
    if with_hints and exported.HINT_FORMATS[fmt] not in signatures:
      why = ('was trained without hints, so it cannot follow --hint or --hints-file: train with python -m '
             'trainer.task --hints, or leave the hints out')
    elif strength is not None:
      why = ('has no colour-strength control (an mse model has none; a classification model exported before it '
             'existed: re-export it with python -m trainer.export --job-dir JOB_DIR), so it cannot follow '
             '--strength: leave --strength out')
    else:
      why = 'lacks it: re-export it with python -m trainer.export --job-dir JOB_DIR'
    raise app.UsageError(f'--model {path} has no signature {needed}: it {why}')
  return path, hashlib.sha256(hashlib.sha256(graph).digest() + hashlib.sha256(weights).digest()).hexdigest()


def _hints(cfg):
  """--hint and --hints-file -> [every, {name: list}] as JSON (what the workers and the command get), or None."""
  try:
    every = [user_hints.parse_cli(text) for text in cfg.hint]
    per_file = {}
    if cfg.hints_file:
      listed, per_file = colorize.read_hints_file(cfg.hints_file)
      every += listed
  except user_hints.HintError as e:
    raise app.UsageError(str(e)) from None
  if len(every) > user_hints.MAX_HINTS:
    raise app.UsageError(f'{len(every)} hints for every input: at most {user_hints.MAX_HINTS}')
  if not every and not per_file:
    return None
  return [[h.to_json() for h in every], {k: [h.to_json() for h in v] for k, v in per_file.items()}]


def _check_output(cfg):
  """An --output inside a folder that is read would hold the next run's inputs (a resumed run then finds its
  inputs changed and stops)."""
  resolved = lambda p: p.rstrip('/') if '://' in p else os.path.abspath(p)
  out = resolved(cfg.output)
  for spec in cfg.inputs:
    _, root, images_only = sources.expand(spec)
    if images_only and (out + '/').startswith(resolved(root) + '/'):
      raise app.UsageError(f'--output {cfg.output} is inside --input {spec}: the images it writes would be '
                           'inputs of the next run; choose an --output outside the folders read')


def resolve(cfg):
  """The config a job runs: checked as the flags check it, --output without a trailing slash, the paths
  reachable (launch.check_paths), the hints read, the model's version and identity fixed."""
  cli.validate(cfg)
  if not cfg.output or not cfg.model:
    raise app.UsageError('--model EXPORT_DIR and --output DIR are required')
  if not cfg.inputs:
    raise app.UsageError('give at least one --input (folder, glob, file or gs:// prefix)')
  cfg = dataclasses.replace(cfg, output=cfg.output.rstrip('/'), inputs=list(cfg.inputs))
  _check_output(cfg)
  launch.check_paths(cfg.inputs, cfg.output, [cfg.model, cfg.hints_file])
  hints = _hints(cfg)
  path, sha = _model(cfg.model, cfg.format, hints is not None, cfg.strength)
  return dataclasses.replace(cfg, hints=hints, model_path=path, model_sha256=sha)


def _stray(output):
  """Files in --output that no job recorded (its work area aside): the job could overwrite them."""
  found = [m.path for m in launch.match(output + '/**', '--output', output, role=cloud.WRITE_ROLE, limit=10)
           if not m.path.startswith(posixpath.join(output, resume.WORK) + '/')]
  return f'files ({found[0][len(output) + 1:]}, ...)' if found else None


def info(cfg):
  """What summary.json says besides the counts: the model, the format, the inputs."""
  return {'model': {'path': cfg.model_path, 'sha256': cfg.model_sha256}, 'format': cfg.format,
          'strength': cfg.strength,
          'extension': colorize.EXTENSIONS[cfg.format], 'inputs': cfg.inputs}


def read_summary(output):
  with FileSystems.open(posixpath.join(output, batch_job.SUMMARY_FILE), compression_type='uncompressed') as f:
    return json.loads(f.read().decode())


def run(argv, test_pipeline=None):
  """Run (or resume, or find finished) the job of a command line (argv[0] is the program); returns the summary."""
  cfg, beam_args = parse(argv)
  return run_config(cfg, beam_args, test_pipeline)


def run_config(cfg, beam_args, test_pipeline=None):
  """Run the job of a config; beam_args: Beam's options. The totals come from summary.json, so that they count
  the units a killed run committed; 'images_per_second' counts this run's images only."""
  cfg = resolve(cfg)
  command = config.command(cfg)
  state = resume.begin(cfg.output, command, finished=batch_job.SUMMARY_FILE, stray=_stray)
  started = time.time()
  counters, load_seconds = {}, 0.0
  if state == 'complete':
    logging.info('%s: this job already finished (%s); nothing to do', cfg.output, batch_job.SUMMARY_FILE)
  else:
    if state == 'resume':
      logging.info('%s: resuming the unfinished job (committed work units are skipped)', cfg.output)
    pipeline = test_pipeline or beam.Pipeline(options=launch.pipeline_options(beam_args))
    batch_job.build(pipeline, cfg, info(cfg), {'command': command, 'fingerprint': resume.fingerprint(command)})
    result = launch.run(pipeline)
    counters, load_seconds = launch.counters(result, batch_job.NAMESPACE), launch.model_load_seconds(result)
  seconds = time.time() - started
  done = read_summary(cfg.output)
  units = done['job']['units']
  summary = dict(done['counts'], output=cfg.output, format=cfg.format, failed=done['failures']['by_reason'],
                 units=units, units_skipped=counters.get('units_skipped', units if state == 'complete' else 0),
                 written_this_run=counters.get('written', 0), state=state, seconds=round(seconds, 1),
                 model_load_seconds=load_seconds)
  summary['images_per_second'] = round(summary['written_this_run'] / seconds, 2) if seconds else 0.0
  return summary


def _print_summary(s):
  more = [f'  colour   {s["had_colour"]} input(s) had colour already: it was replaced by colour predicted from '
          'their lightness'] if s['had_colour'] else []
  if s['model_load_seconds']:   # a fixed cost that dominates a short run's time (11 s of 40 s for 200 photos)
    more.append(f'  model    loaded in {s["model_load_seconds"]:.1f} s of that time (once per worker process)')
  launch.print_summary('Colouring finished', s, f'{s["written"]}  ({s["format"]})', more)


def main(cfg, argv):
  launch.quiet_beam()
  try:
    summary = run_config(cfg, argv[1:])
  except (cloud.PathError, app.UsageError, resume.ResumeRefused) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  _print_summary(summary)
  if summary['written'] == 0:
    print('error: no image was written; see the failures report', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  cli.run(main, Config, known_only=True)   # this module's flags; the rest go to Beam
