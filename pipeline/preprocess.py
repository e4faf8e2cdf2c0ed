r"""The Beam job: photos -> letterboxed CIE Lab + frozen greyscale embeddings -> sharded TFRecords.

  python -m pipeline.preprocess --input PATH|GLOB|gs://... [--tfds NAME] --output DIR \
      [--embedder inception_resnet_v2|mobilenet_v2] [--embedder-weights imagenet|random|PATH] \
      [--runner DirectRunner|DataflowRunner] [any Beam / Dataflow option]

Writes to DIR: train-SSSSS-of-NNNNN.tfrecord and val-... shards (record contract: pipeline/schema.py),
metadata.json and failures.jsonl (one line per rejected input: path and reason). Its flags are the fields of
pipeline/config.py; flags it does not define are handed to Beam's PipelineOptions unchanged. Without --input or
--tfds it reads the colour sample photos that scikit-image ships, so it runs anywhere offline. This module is the
command line; the Beam graph is in pipeline/job.py (a module of its own, so that workers unpickle its classes by
an importable name rather than __main__).
"""
import dataclasses
import logging as std_logging
import os
import posixpath
import re
import sys
import time

from pipeline import quiet

quiet.tensorflow()  # before Beam or Keras import it, so its start-up notices stay off the terminal

import apache_beam as beam
from absl import app, logging
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from pipeline import cli, cloud, config, embedder, job, resume, schema, sources


def parse(argv):
  """(config, the arguments for Beam): this module's flags (pipeline/config.py) parsed with a FlagValues of its
  own each call, so tests and benchmarks can call run() repeatedly; the flags it does not define go to Beam."""
  cfg, rest = cli.parse(config.Config, argv, known_only=True)
  return cfg, rest[1:]


def _check_paths(cfg, info):
  """Before any work starts: credentials when gs:// is used, inputs that match, an output and weights that can be
  reached. A job that fails on these later does so inside Beam's workers, with a traceback and partial output."""
  weights = cfg.embedder_weights
  cloud.check_credentials(cfg.inputs + [cfg.output, weights, cfg.tfds_data_dir])
  for spec in cfg.inputs:
    pattern, _, _ = sources.expand(spec)
    if not _match(pattern, '--input', spec):
      hint = f' (`gcloud storage ls {spec}`)' if cloud.is_gcs(spec) else ''
      raise cloud.PathError(f'--input {spec}: nothing matches {pattern}; check the path{hint}')
  if cloud.is_gcs(cfg.output):
    # Listing is what Beam's sink does when it finalises the shards: a missing bucket or a missing
    # storage.objects.list permission shows here, not after the whole job has run.
    _match(cfg.output + '/*', '--output', cfg.output, role=cloud.WRITE_ROLE)
  if cloud.is_gcs(weights):
    # Fetched once here (the in-process workers reuse the copy) so that metadata.json records its sha256 too.
    info['embedder']['weights_sha256'] = embedder.sha256(embedder.local_weights(weights))


def _match(pattern, flag, path, role=cloud.READ_ROLE):
  try:
    return FileSystems.match([pattern], limits=[1])[0].metadata_list
  except BeamIOError as e:  # a listing fails with 404 only when the bucket itself is missing
    raise cloud.PathError(f'{flag} ' + cloud.explain(path, e, role, missing=cloud.no_bucket(path))) from None


def _pipeline_options(beam_args):
  options = PipelineOptions(beam_args)
  standard = options.view_as(StandardOptions)
  setup = options.view_as(SetupOptions)
  if standard.runner and 'Dataflow' in standard.runner and not setup.setup_file:
    # Workers need this package; the file that builds it is ours, so users need not remember the flag.
    setup.setup_file = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'setup.py')
    logging.info('DataflowRunner: installing this package on the workers with --setup_file %s',
                 setup.setup_file)
  if not standard.runner:
    standard.runner = 'DirectRunner'
  return options


def _counters(result):
  counters = {}
  for c in result.metrics().query(MetricsFilter().with_namespace(job.NAMESPACE))['counters']:
    counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + (c.committed or c.attempted or 0)
  return counters


def _model_load_seconds(result):
  """The one-off embedder load RunInference reports (a long job amortises it; a short benchmark does not)."""
  seconds = 0.0
  for d in result.metrics().query(MetricsFilter())['distributions']:
    if d.key.metric.name.endswith('load_model_latency_milli_secs'):
      seconds = max(seconds, ((d.committed or d.attempted).max or 0) / 1000.0)
  return seconds


def _refusal(error):
  """The ResumeRefused raised inside a worker, which runners re-raise wrapped in their own exception types."""
  if isinstance(error, resume.ResumeRefused):
    return error
  found = re.search(r'ResumeRefused: (.+)', str(error))
  return resume.ResumeRefused(found.group(1).strip()) if found else None


def run(argv, test_pipeline=None):
  """Run (or resume, or find finished) the job of a command line (argv[0] is the program); returns the summary.

  `test_pipeline` lets tests inject a pipeline.
  """
  cfg, beam_args = parse(argv)
  return run_config(cfg, beam_args, test_pipeline)


def job_config(cfg):
  """The config the job runs (config.resolve), with a TFDS dataset's slices: the units, fixed at graph build."""
  cfg = config.resolve(cfg)
  if cfg.tfds:
    cfg = dataclasses.replace(cfg, tfds_slices=job.tfds_slices(cfg))
  return cfg


def run_config(cfg, beam_args, test_pipeline=None):
  """Run the job of a config; beam_args: Beam's options. The totals of the summary come from metadata.json, so
  that they count the work units a killed run committed before this one; 'images_per_second' counts this run's
  records only."""
  cfg = job_config(cfg)
  info = config.metadata(cfg)
  _check_paths(cfg, info)
  state = resume.begin(cfg.output, config.command(cfg))
  started = time.time()
  counters, load_seconds = {}, 0.0
  if state == 'complete':
    logging.info('%s: this job already finished (metadata.json); nothing to do', cfg.output)
  else:
    if state == 'resume':
      logging.info('%s: resuming the unfinished job (committed work units are skipped)', cfg.output)
    pipeline = test_pipeline or beam.Pipeline(options=_pipeline_options(beam_args))
    job.build(pipeline, cfg, info)
    try:
      result = pipeline.run()
      result.wait_until_finish()
    except Exception as e:
      refused = _refusal(e)
      if refused:
        raise refused from None
      raise
    counters, load_seconds = _counters(result), _model_load_seconds(result)
  seconds = time.time() - started
  meta = schema.read_metadata(cfg.output)
  this_run = sum(counters.get(f'written_{s}', 0) for s in schema.SPLITS)
  summary = {
      'output': cfg.output,
      'read': meta['job']['inputs'],
      'written': dict(meta['counts']),
      'failed': dict(meta['failures']['by_reason']),
      'units': meta['job']['units'],
      'units_skipped': counters.get('units_skipped', meta['job']['units'] if state == 'complete' else 0),
      'written_this_run': this_run,
      'state': state,
      'seconds': round(seconds, 1),
  }
  summary['images_per_second'] = round(this_run / seconds, 2) if seconds else 0.0
  summary['model_load_seconds'] = load_seconds
  return summary


def _print_summary(s):
  written = sum(s['written'].values())
  lines = [f'Preprocessing finished: {s["output"]}',
           f'  read     {s["read"]}',
           f'  written  {written}  (' + ', '.join(f'{k} {v}' for k, v in s['written'].items()) + ')',
           f'  failed   {sum(s["failed"].values())}' + (
               '  (' + ', '.join(f'{k} {v}' for k, v in s['failed'].items()) + f'; see '
               f'{posixpath.join(s["output"], schema.FAILURES_FILE)})' if s['failed'] else ''),
           f'  time     {s["seconds"]} s, {s["images_per_second"]} images/s']
  if s['units_skipped']:
    lines.append(f'  resumed  {s["units_skipped"]} of {s["units"]} work units were already done' +
                 (' (the job had finished: nothing to do)' if s['state'] == 'complete' else ''))
  print('\n'.join(lines), flush=True)


def main(cfg, argv):
  std_logging.getLogger('apache_beam').setLevel(std_logging.WARNING)
  # Local multi-processing workers relay Beam's own start-up warnings (unparseable internal args) through this.
  std_logging.getLogger('apache_beam.runners.portability.local_job_service').setLevel(std_logging.ERROR)
  try:
    summary = run_config(cfg, argv[1:])
  except (embedder.EmbedderError, cloud.PathError, app.UsageError, resume.ResumeRefused) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  _print_summary(summary)
  if sum(summary['written'].values()) == 0:
    print('error: no record was written; see the failures report', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  cli.run(main, config.Config, known_only=True)   # the flags of pipeline/config.py; the rest go to Beam
