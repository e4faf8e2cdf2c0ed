"""The Beam graph of the colouring job (serving/batch.py): list, group inputs into work units by their output
names, then per unit read and check, colour (RunInference on the export) and write; failures.jsonl and
summary.json at the end.

The scale contract is the preprocessing job's, and so is its code: the listing, the units and their commit
(pipeline/job.py file_units, pipeline/units.py SkipCommitted and SumSummaries), the resume (pipeline/resume.py).
A unit's images are written as they come out of the model; its summary (pipeline/resume.py unit_summary) is
committed once every input of the unit is an image or a failure line, so a killed job redoes at most the units
in progress, and rewrites their images with the same bytes. Classes live here, not in the module run as
__main__, because workers unpickle them by module name.
"""
import collections
import functools
import json
import posixpath
from concurrent import futures

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipeline import decode, job, resume, schema, shards
from pipeline import units as units_
from serving import batch_names, errors, files, inputs, user_hints
from serving.batch_handler import ColorizerHandler

NAMESPACE = units_.NAMESPACE
SUMMARY_FILE = 'summary.json'   # written last: its presence means the job finished (resume.begin's `finished`)
ZERO = {'read': 0, 'written': 0, 'had_colour': 0}   # a unit summary's counts (units_.SumSummaries)
MIME = {'.jpg': 'image/jpeg', '.png': 'image/png'}
THREADS = 4   # reads and writes in flight per worker: a bucket's latency overlaps with the model's work


def _reason(data, max_pixels, default):
  """(reason, detail) of an image the CLI's check or the model refused, as the preprocessing job names them
  (pipeline/decode.py: empty_file, not_an_image, corrupt_image, too_many_pixels, ...); `default` when Pillow
  decodes it after all."""
  try:
    decode.decode(data, max_pixels)
  except decode.DecodeError as e:
    return e.reason, e.detail
  return default


class PrepareBatches(beam.DoFn):
  """(unit, [Source] sorted by key) -> (batch meta, (encoded images, hints)) for RunInference, in fixed batches.

  Each input is named (serving/batch_names.py), read and checked as the CLI checks it (serving/inputs.prepare:
  the same bytes reach the model), a few inputs ahead in threads. Every input ends up in exactly one batch's meta,
  as an item to colour or a failure line; the last batch says how many batches the unit has.
  """

  def __init__(self, extension, max_pixels, batch_size, hints):
    self._extension, self._max_pixels, self._batch_size = extension, max_pixels, batch_size
    self._hints_json = hints   # [every, {file name: list}] as JSON, or None
    self._read = Metrics.counter(NAMESPACE, 'read')

  def setup(self):
    self._pool = futures.ThreadPoolExecutor(THREADS)
    self._hints = None
    if self._hints_json:
      from serving import colorize   # imports TensorFlow: only when there are hints (workers have it loaded)
      every, per_file = self._hints_json
      self._hints = colorize.hints_for(user_hints.from_json(every, '--hint'),
                                       {k: user_hints.from_json(v, k) for k, v in per_file.items()})

  def teardown(self):
    self._pool.shutdown()

  def process(self, unit_sources):
    unit, srcs = unit_sources
    items, images, hints, failures, index = [], [], [], [], 0
    for (src, name, failed), loaded in self._loaded(batch_names.assign(srcs, self._extension)):
      self._read.inc()
      if failed or isinstance(loaded, dict):
        failures.append(failed or loaded)
        continue
      items.append({'path': src.key, 'name': name, 'colour': loaded.colour})
      images.append(loaded.data)
      hints.append(self._hints(files.Source(src.key, src.relative_key)) if self._hints else None)
      if len(items) == self._batch_size:
        yield self._batch(unit, index, items, images, hints, failures, None)
        items, images, hints, failures, index = [], [], [], [], index + 1
    # The last batch (maybe without images, when the inputs ran out at a batch's end or all failed).
    yield self._batch(unit, index, items, images, hints, failures, index + 1)

  def _batch(self, unit, index, items, images, hints, failures, batches):
    meta = {'unit': unit, 'index': index, 'batches': batches, 'items': items, 'failures': failures}
    return meta, (images, hints if self._hints else None)

  def _loaded(self, named):
    """(named entry, Prepared or failure line or None) in order, reading up to two batches ahead in threads:
    memory holds those inputs, never the unit's."""
    pending = collections.deque()
    for entry in named:
      pending.append((entry, self._pool.submit(self._load, entry[0]) if entry[1] else None))
      if len(pending) > 2 * self._batch_size:
        entry, loading = pending.popleft()
        yield entry, loading and loading.result()
    for entry, loading in pending:
      yield entry, loading and loading.result()

  def _load(self, src):
    try:
      with FileSystems.open(src.key, compression_type='uncompressed') as f:
        data = f.read()
    except Exception as e:  # permissions, vanished files, network: the job goes on
      return batch_names.failure(src, 'unreadable', f'{type(e).__name__}: {e}')
    try:
      return inputs.prepare(data, max_pixels=self._max_pixels)
    except errors.TooLarge as e:
      return batch_names.failure(src, 'too_many_pixels', str(e))
    except errors.BadInput as e:
      return batch_names.failure(src, *_reason(data, self._max_pixels, ('corrupt_image', str(e))))


class _Unit(units_.UnitState):
  """Of a colouring unit, also: its writes in flight, how many of its inputs had colour."""

  def __init__(self):
    super().__init__()
    self.writes, self.had_colour = [], 0


class WriteImages(units_.UnitWriter):
  """(batch meta, PredictionResult) -> the unit's summary, once all of its batches are in, its images written
  and the summary committed.

  An image appears whole: on a local disk it is written under .work/tmp and renamed into place; on gs:// (and
  other object stores) it is uploaded to its final name, where an object appears only when its upload completes.
  """

  def __init__(self, output, max_pixels):
    self._output, self._max_pixels = output, max_pixels

  def setup(self):
    self._pool = futures.ThreadPoolExecutor(THREADS)
    self._progress = units_.Progress('coloured')

  def teardown(self):
    self._pool.shutdown()

  def new_unit(self):
    return _Unit()

  def take(self, unit, meta, result):
    unit.read += len(meta['items'])
    for item, data, outcome in zip(meta['items'], result.example[0], result.inference):
      if isinstance(outcome, Exception):
        unit.failures.append(self._model_failure(item, data, outcome))
        continue
      self._progress.tick()
      unit.had_colour += item['colour']
      path = posixpath.join(self._output, item['name'])
      unit.writes.append((item, path, self._pool.submit(self._write, path, outcome)))

  def _model_failure(self, item, data, error):
    if isinstance(error, errors.OutOfMemory):
      reason = 'out_of_memory', str(error)
    elif isinstance(error, errors.BadInput):   # the model's decoder refused what the header check let through
      reason = _reason(data, self._max_pixels, ('model_refused', str(error)))
    else:
      reason = 'model_failed', str(error)
    return {'path': item['path'], 'reason': reason[0], 'detail': reason[1]}

  def _write(self, path, data):
    if '://' in path:
      with FileSystems.create(path, mime_type=MIME.get(posixpath.splitext(path)[1], 'application/octet-stream'),
                              compression_type='uncompressed') as f:
        f.write(data)
    else:
      resume.write_atomically(path, data, self._output)

  def commit(self, unit, state):
    written = 0
    for item, path, writing in state.writes:
      try:
        writing.result()
        written += 1
      except Exception as e:  # a full disk, a revoked permission: that input is not written, and says why
        state.failures.append({'path': item['path'], 'reason': 'unwritable',
                               'detail': f'cannot write {path}: {type(e).__name__}: {e}'[:500]})
    Metrics.counter(NAMESPACE, 'written').inc(written)
    Metrics.counter(NAMESPACE, 'had_colour').inc(state.had_colour)
    for f in state.failures:
      Metrics.counter(NAMESPACE, f'failed_{f["reason"]}').inc()
    summary = {'unit': unit, 'read': state.read, 'written': written, 'had_colour': state.had_colour,
               'failures': sorted(state.failures, key=lambda f: f['path'])}
    resume.write_atomically(resume.unit_summary(self._output, unit), json.dumps(summary).encode(), self._output)
    return summary


def finalize(_, output, info, record, totals, failures):
  """failures.jsonl, then summary.json (the mark of a finished job), then remove .work/."""
  failures = units_.write_failures(output, failures)
  summary = dict(info)
  summary['counts'] = {k: totals[k] for k in ZERO}
  summary['failures'] = {'count': len(failures), 'by_reason': dict(sorted(totals['by_reason'].items())),
                         'report': schema.FAILURES_FILE}
  summary['job'] = dict(record, inputs=totals['read'], units=totals['units'])
  resume.write_atomically(posixpath.join(output, SUMMARY_FILE),
                          (json.dumps(summary, indent=1, sort_keys=True) + '\n').encode(), output)
  resume.finish(output)


def build(pipeline, cfg, info, record):
  """Adds the colouring job of a resolved serving.batch.Config to `pipeline`; info: what summary.json says of
  the model and the output; record: the job's command and fingerprint (summary.json's 'job').

  list -> units -> [skip committed | read, check | colour | write] in one fused stage -> failures.jsonl,
  summary.json.
  """
  from serving import colorize
  out, extension = cfg.output, colorize.EXTENSIONS[cfg.format]
  units = job.file_units(pipeline, cfg.inputs, out,
                         functools.partial(shards.num_units, num_shards=1, unit_size=cfg.unit_size),
                         functools.partial(batch_names.unit_key, extension), batch_names.source)
  todo = units | 'SkipCommitted' >> beam.ParDo(units_.SkipCommitted(out)).with_outputs('done', main='todo')
  handler = KeyedModelHandler(ColorizerHandler(cfg.model_path, cfg.format, cfg.strength))
  committed = (todo.todo
               | 'Prepare' >> beam.ParDo(PrepareBatches(extension, cfg.max_pixels, cfg.batch_size, cfg.hints))
               | 'Colorize' >> RunInference(handler)
               | 'WriteImages' >> beam.ParDo(WriteImages(out, cfg.max_pixels)))
  summaries = (todo.done, committed) | 'AllUnits' >> beam.Flatten()
  totals = summaries | 'Totals' >> beam.CombineGlobally(units_.SumSummaries(ZERO))
  failures = summaries | 'FailureLines' >> beam.FlatMap(lambda s: s['failures'])
  _ = (pipeline
       | 'Once' >> beam.Create([None])
       | 'WriteSummary' >> beam.Map(finalize, out, info, record, beam.pvalue.AsSingleton(totals),
                                    beam.pvalue.AsList(failures)))
