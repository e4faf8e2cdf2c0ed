"""Launching one of the project's Beam jobs from its command line (pipeline/preprocess.py, serving/batch.py): the
checks of the paths before any work starts, Beam's options, running the pipeline so that a refusal raised in a
worker reaches the user as itself, and what a finished run reports (its counters, the one-off model load).

TensorFlow-free, as the command lines' flag parsing is: it imports Beam and the cloud checks only.
"""
import logging as std_logging
import os
import posixpath
import re

from absl import logging
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from pipeline import cloud, resume, schema, sources


def check_paths(inputs, output, others=()):
  """Before any work starts: credentials when gs:// is used (`others`: more paths the job reads), inputs that
  match, an output that can be reached. A job that fails on these later does so inside Beam's workers, with a
  traceback and partial output."""
  cloud.check_credentials(list(inputs) + [output, *others])
  for spec in inputs:
    pattern, _, _ = sources.expand(spec)
    if not match(pattern, '--input', spec):
      hint = f' (`gcloud storage ls {spec}`)' if cloud.is_gcs(spec) else ''
      raise cloud.PathError(f'--input {spec}: nothing matches {pattern}; check the path{hint}')
  if cloud.is_gcs(output):
    # Listing is what the job does when it checks for a finished or unfinished job there: a missing bucket or a
    # missing storage.objects.list permission shows here, not after the whole job has run.
    match(output + '/*', '--output', output, role=cloud.WRITE_ROLE)


def match(pattern, flag, path, role=cloud.READ_ROLE, limit=1):
  """The first `limit` files that match `pattern`; a failed listing is a PathError naming `flag` and the fix."""
  try:
    return FileSystems.match([pattern], limits=[limit])[0].metadata_list
  except BeamIOError as e:  # a listing fails with 404 only when the bucket itself is missing
    raise cloud.PathError(f'{flag} ' + cloud.explain(path, e, role, missing=cloud.no_bucket(path))) from None


def pipeline_options(beam_args):
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


def quiet_beam():
  """Beam's own INFO lines and the local multi-processing workers' start-up warnings (unparseable internal args,
  relayed through local_job_service) are nothing a user of the job can act on."""
  std_logging.getLogger('apache_beam').setLevel(std_logging.WARNING)
  std_logging.getLogger('apache_beam.runners.portability.local_job_service').setLevel(std_logging.ERROR)


def run(pipeline):
  """Run a built pipeline to its end; returns its result. A ResumeRefused raised in a worker is raised as one."""
  try:
    result = pipeline.run()
    result.wait_until_finish()
  except Exception as e:
    refused = refusal(e)
    if refused:
      raise refused from None
    raise
  return result


def counters(result, namespace):
  counts = {}
  for c in result.metrics().query(MetricsFilter().with_namespace(namespace))['counters']:
    counts[c.key.metric.name] = counts.get(c.key.metric.name, 0) + (c.committed or c.attempted or 0)
  return counts


def model_load_seconds(result):
  """The one-off model load RunInference reports (a long job amortises it; a short benchmark does not)."""
  seconds = 0.0
  for d in result.metrics().query(MetricsFilter())['distributions']:
    if d.key.metric.name.endswith('load_model_latency_milli_secs'):
      seconds = max(seconds, ((d.committed or d.attempted).max or 0) / 1000.0)
  return seconds


def refusal(error):
  """The ResumeRefused raised inside a worker, which runners re-raise wrapped in their own exception types."""
  if isinstance(error, resume.ResumeRefused):
    return error
  found = re.search(r'ResumeRefused: (.+)', str(error))
  return resume.ResumeRefused(found.group(1).strip()) if found else None


def print_summary(title, s, written, more=()):
  """What a job prints at its end, from its summary `s`: read, `written` (its own words), failed by reason, time,
  `more` lines, and the work units a killed run had done."""
  lines = [f'{title}: {s["output"]}',
           f'  read     {s["read"]}',
           f'  written  {written}',
           f'  failed   {sum(s["failed"].values())}' + (
               '  (' + ', '.join(f'{k} {v}' for k, v in s['failed'].items()) + f'; see '
               f'{posixpath.join(s["output"], schema.FAILURES_FILE)})' if s['failed'] else ''),
           f'  time     {s["seconds"]} s, {s["images_per_second"]} images/s', *more]
  if s['units_skipped']:
    lines.append(f'  resumed  {s["units_skipped"]} of {s["units"]} work units were already done' +
                 (' (the job had finished: nothing to do)' if s['state'] == 'complete' else ''))
  print('\n'.join(lines), flush=True)
