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
import sys
import time

from pipeline import quiet

quiet.tensorflow()  # before Beam or Keras import it, so its start-up notices stay off the terminal

import apache_beam as beam
from absl import app, logging

from pipeline import cli, cloud, config, embedder, job, launch, resume, schema
from pipeline.launch import pipeline_options as _pipeline_options  # noqa: F401  (tests build Dataflow options)


def parse(argv):
  """(config, the arguments for Beam): this module's flags (pipeline/config.py) parsed with a FlagValues of its
  own each call, so tests and benchmarks can call run() repeatedly; the flags it does not define go to Beam."""
  cfg, rest = cli.parse(config.Config, argv, known_only=True)
  return cfg, rest[1:]


def _check_paths(cfg, info):
  """Before any work starts (launch.check_paths), and the weights that can be reached."""
  weights = cfg.embedder_weights
  launch.check_paths(cfg.inputs, cfg.output, [weights, cfg.tfds_data_dir])
  if cloud.is_gcs(weights):
    # Fetched once here (the in-process workers reuse the copy) so that metadata.json records its sha256 too.
    info['embedder']['weights_sha256'] = embedder.sha256(embedder.local_weights(weights))


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
    result = launch.run(pipeline)
    counters, load_seconds = launch.counters(result, job.NAMESPACE), launch.model_load_seconds(result)
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
  launch.print_summary('Preprocessing finished', s, f'{sum(s["written"].values())}  ('
                       + ', '.join(f'{k} {v}' for k, v in s['written'].items()) + ')')


def main(cfg, argv):
  launch.quiet_beam()
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
