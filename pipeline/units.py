"""The job's work units: prepare them in fixed batches, commit each as pieces + a summary, assemble the shards.

Why units (BUILD_NOTES.md, Scale): Beam's fixed-shard write groups every record by shard, and the local runner
holds that whole group-by in memory (+0.43 MB per image, dead at ~50k images on 24 GB), and shows nothing before
its final rename, so a kill loses all. Here nothing larger than a path crosses a group-by: one fused stage
reads, prepares, embeds and writes a unit (about --unit-size inputs), holding at most one unit's records, and
commits it with a summary file. A resumed job skips committed units; shards are assembled from the pieces once
every unit is committed (pipeline/shards.py says which pieces make which shard).
"""
import copy
import json
import time

import apache_beam as beam
import numpy as np
from absl import logging
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline import decode, quiet, resume, schema, shards, sources

NAMESPACE = 'colorizer'
COPY_BLOCK = 8 << 20


class SkipCommitted(beam.DoFn):
  """(unit, payload) -> itself when the unit still has to run; its stored summary (output 'done') when not."""

  def __init__(self, output):
    self._output = output
    self._skipped = Metrics.counter(NAMESPACE, 'units_skipped')

  def process(self, unit_payload):
    unit = unit_payload[0]
    if resume.exists(resume.unit_summary(self._output, unit)):
      self._skipped.inc()
      yield beam.pvalue.TaggedOutput('done', resume.read_summary(self._output, unit))
    else:
      yield unit_payload


class ReadTFDSSlice(beam.DoFn):
  """(unit, (filename, skip, take)) -> (unit, [Source]) in the file's order: image bytes stay in this stage."""

  def __init__(self, cfg):
    self._name, self._split, self._data_dir = cfg.tfds, cfg.tfds_split, cfg.tfds_data_dir

  def setup(self):
    quiet.tensorflow()
    import tensorflow_datasets as tfds
    self._tfds = tfds
    self._builder = tfds.builder(self._name, data_dir=self._data_dir)
    features = self._builder.info.features
    self._image_key = next(k for k, f in features.items() if isinstance(f, tfds.features.Image))
    label = features.get('label') if hasattr(features, 'get') else None
    self._names = list(getattr(label, 'names', None) or [])

  def process(self, unit_slice):
    from tensorflow_datasets.core import naming
    unit, (filename, skip, take) = unit_slice
    info = naming.FilenameInfo.from_str(filename)
    ds = self._builder.as_dataset(  # as tfds.beam.ReadFromTFDS reads one file instruction
        split=f'{info.split}[{info.shard_index}shard]',
        decoders={self._image_key: self._tfds.decode.SkipDecoding()},
        read_config=self._tfds.ReadConfig(add_tfds_id=True), shuffle_files=False)
    synsets = sources.imagenet_synsets()
    found = []
    for example in self._tfds.as_numpy(ds.skip(skip).take(take)):
      key = example['tfds_id'].decode()
      synset, label = '', -1
      if 'label' in example:
        label = int(example['label'])
        name = self._names[label] if label < len(self._names) else ''
        synset, label = (name, synsets[name]) if name in synsets else ('', label)
      found.append(sources.Source(f'tfds://{self._name}/{self._split}/{key}', key, synset, label,
                                  bytes(example[self._image_key])))
    yield unit, found


class PrepareUnit(beam.DoFn):
  """(unit, [Source]) -> (batch meta, uint8 L canvases [B, S, S]) for RunInference, in fixed batches.

  Batches are formed here, within the unit and in its order, so that the embedder sees the same batches on every
  run. Every input ends up in exactly one batch's meta, as a record or a failure; the last batch says how many
  batches the unit has, so the writer knows when it is complete whatever order they reach it in.
  """

  def __init__(self, cfg):
    self._size, self._max_pixels, self._val_fraction = cfg.image_size, cfg.max_pixels, cfg.val_fraction
    self._batch_size = cfg.embedder_batch_size
    self._read = Metrics.counter(NAMESPACE, 'read')

  def setup(self):
    tf = quiet.tensorflow()  # first TF import of a worker process: keep its notices off the terminal
    from pipeline import colour, letterbox

    size = self._size

    # The Lab conversion is elementwise maths on a fixed [S, S, 3] canvas: XLA compiles it once per worker and
    # runs it about 4x faster than op by op (12 -> 3 ms a canvas on 2 cores, BUILD_NOTES.md).
    @tf.function(jit_compile=True)
    def quantized_lab(canvas):
      return schema.quantize_lab(colour.rgb_to_lab(canvas / 255.0))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def prepare(rgb):
      canvas, box = letterbox.letterbox(rgb, size)
      q = quantized_lab(canvas)
      return q, box, q[..., 0], schema.ab_histogram(schema.dequantize_lab(q), box)

    self._prepare = prepare
    self._progress = Progress('prepared')

  def process(self, unit_sources):
    unit, srcs = unit_sources
    records, canvases, failures, index = [], [], [], 0
    for src in srcs:
      self._read.inc()
      self._progress.tick()
      prepared = self._one(src)
      if isinstance(prepared, dict):
        failures.append(prepared)
        continue
      records.append(prepared[0])
      canvases.append(prepared[1])
      if len(records) == self._batch_size:
        yield self._batch(unit, index, records, canvases, failures, None)
        records, canvases, failures, index = [], [], [], index + 1
    # The last batch (maybe without images, when the inputs ran out at a batch's end or all failed).
    yield self._batch(unit, index, records, canvases, failures, index + 1)

  def _batch(self, unit, index, records, canvases, failures, batches):
    meta = {'unit': unit, 'index': index, 'batches': batches, 'records': records, 'failures': failures}
    # A unit's last batch is padded (black canvases, results dropped by the writer) to a multiple of a quarter of
    # the batch size: every new batch shape costs the embedder's kernels memory for good (MobileNetV2 at 128 px:
    # +154 MB over the 31 shapes below 32; BUILD_NOTES.md), and the shapes of last batches vary with the unit.
    step = max(1, self._batch_size // 4)
    padded = min(self._batch_size, -(-len(canvases) // step) * step)
    stacked = np.zeros((padded, self._size, self._size), np.uint8)
    if canvases:
      stacked[:len(canvases)] = np.stack(canvases)
    return meta, stacked

  def _one(self, src):
    """A Source -> (record, L canvas), or a failure line."""
    data = src.data
    if data is None:
      try:
        with FileSystems.open(src.key, compression_type='uncompressed') as f:
          data = f.read()
      except Exception as e:  # permissions, vanished files, network: the job goes on
        return _failure(src.key, 'unreadable', f'{type(e).__name__}: {e}')
    try:
      rgb, size = decode.decode(data, self._max_pixels, min_side=self._size)
    except decode.DecodeError as e:
      return _failure(src.key, e.reason, e.detail)
    q, box, l_canvas, hist = (t.numpy() for t in self._prepare(rgb))
    record = {'key': src.key, 'label': src.label, 'synset': src.synset, 'lab': schema.encode_lab(q), 'box': box,
              'size': size, 'hist': hist, 'split': sources.split_of(src.relative_key, self._val_fraction)}
    return record, l_canvas


class Progress:
  """A worker's line every 30 s while it works ('prepared 1200 images on this worker (4.1 images/s)'): a job of
  hours shows it is alive and how fast it goes before its summary."""

  def __init__(self, verb, every=30.0):
    self._verb, self._every = verb, every
    self._count, self._started = 0, time.time()
    self._last = self._started

  def tick(self):
    self._count += 1
    now = time.time()
    if now - self._last >= self._every:
      self._last = now
      logging.info('%s %d images on this worker (%.1f images/s)', self._verb, self._count,
                   self._count / (now - self._started))


def _failure(key, reason, detail):
  return {'path': key, 'reason': reason, 'detail': detail}


class UnitState:
  """What a writer holds of one unit until its last batch arrives: the batches seen, how many there are (the
  last says), the inputs read and the failure lines. A job's writer adds what it gathers."""

  def __init__(self):
    self.seen, self.batches, self.read, self.failures = set(), None, 0, []


class UnitWriter(beam.DoFn):
  """(batch meta, PredictionResult) -> a unit's summary, once all of its batches are in and it is committed.

  The batches of a unit are formed by one element of the stage before (PrepareUnit here; the colouring job's
  PrepareBatches): each meta has 'unit', 'index', 'batches' (None but in the last) and 'failures'. A job's writer
  defines new_unit() (a UnitState), take(state, meta, result) (one batch; it adds what it read to state.read)
  and commit(unit, state) -> the summary.
  """

  def start_bundle(self):
    self._open = {}

  def process(self, keyed):
    meta, result = keyed
    unit = self._open.setdefault(meta['unit'], self.new_unit())
    unit.seen.add(meta['index'])
    if meta['batches'] is not None:
      unit.batches = meta['batches']
    unit.failures.extend(meta['failures'])
    unit.read += len(meta['failures'])
    self.take(unit, meta, result)
    if unit.batches is not None and len(unit.seen) == unit.batches:
      del self._open[meta['unit']]
      yield self.commit(meta['unit'], unit)

  def finish_bundle(self):
    # A unit's batches all come from one element of this stage's input, so they share a bundle.
    if self._open:
      raise RuntimeError(f'work units {sorted(self._open)} ended their bundle incomplete '
                         f'({ {u: (len(s.seen), s.batches) for u, s in self._open.items()} } batches seen, expected)')


class _Unit(UnitState):
  """Of a preprocessing unit, also: its serialized records by split, its train ab histogram."""

  def __init__(self):
    super().__init__()
    self.records, self.hist = {split: [] for split in schema.SPLITS}, None


class WriteUnit(UnitWriter):
  """(batch meta, PredictionResult) -> the unit's summary, once all of its batches are in and it is committed.

  Commit: one piece file per split (records sorted by key), then the summary file; each written under a
  temporary name and renamed, so a kill leaves a unit either committed or to be redone, never half-seen.
  """

  def __init__(self, output):
    self._output = output

  def new_unit(self):
    return _Unit()

  def take(self, unit, meta, result):
    unit.read += len(meta['records'])
    inference = result.inference
    for i, record in enumerate(meta['records']):
      if not isinstance(inference, np.ndarray):  # embed_handler.EmbeddingFailed: the whole batch
        unit.failures.append(_failure(record['key'], 'embedding', inference.detail))
        continue
      unit.records[record['split']].append((record['key'], schema.serialize(
          record['key'], record['label'], record['synset'], record['lab'], record['box'], record['size'],
          inference[i])))
      if record['split'] == 'train':
        unit.hist = record['hist'].astype(np.int64) if unit.hist is None else unit.hist + record['hist']

  def commit(self, unit, state):
    written = {}
    for split, records in state.records.items():
      written[split] = len(records)
      if records:
        records.sort(key=lambda kr: kr[0])

        def write(f, records=records):
          for _, raw in records:
            f.write(schema.frame(raw))
        resume.write_atomically(resume.piece(self._output, unit, split), write, self._output)
    for split, n in written.items():
      Metrics.counter(NAMESPACE, f'written_{split}').inc(n)
    for f in state.failures:
      Metrics.counter(NAMESPACE, f'failed_{f["reason"]}').inc()
    hist = state.hist if state.hist is not None else np.zeros((schema.AB_HIST_BINS,) * 2, np.int64)
    summary = {'unit': unit, 'read': state.read, 'written': written, 'hist': hist.tolist(),
               'failures': sorted(state.failures, key=lambda f: f['path'])}
    resume.write_atomically(resume.unit_summary(self._output, unit), json.dumps(summary).encode(), self._output)
    return summary


class AssembleShard(beam.DoFn):
  """(split, shard, shards) -> the shard's final name, its units' pieces concatenated in unit order.

  TFRecord files concatenate: each record carries its own length and checksums. The shard is written under
  .work/tmp and renamed; its pieces are deleted only after that, so a kill in between re-assembles nothing
  (the shard exists) and a resumed run only removes the leftovers with .work/.
  """

  def __init__(self, output):
    self._output = output

  def process(self, shard, written):
    split, index, count = shard
    name = shards.shard_name(split, index, count)
    final = f'{self._output}/{name}'
    pieces = [resume.piece(self._output, u, split)
              for u in shards.units_of_shard(index, count, [u for u, w in written if w[split]])]
    if not resume.exists(final):
      def concatenate(out):
        for path in pieces:
          with FileSystems.open(path, compression_type='uncompressed') as f:
            while True:
              block = f.read(COPY_BLOCK)
              if not block:
                break
              out.write(block)
      resume.write_atomically(final, concatenate, self._output)
    gone = [p for p in pieces if resume.exists(p)]
    if gone:
      FileSystems.delete(gone)  # disk: the job needs its output plus one shard, not twice its output
    yield split, name


class SumSummaries(beam.CombineFn):
  """Unit summaries -> totals: 'units' (how many), 'by_reason' (their failure lines counted by reason), and each
  field of `zero` (the totals of no unit) summed over them: numbers, dicts of numbers (by key), arrays (a
  summary's lists, such as the ab histogram). Any job on the work-unit contract; the preprocessing job's zero is
  PREPROCESS_ZERO."""

  def __init__(self, zero):
    self._zero = zero

  def create_accumulator(self):
    return dict(copy.deepcopy(self._zero), units=0, by_reason={})

  def add_input(self, acc, s):
    one = {k: np.asarray(s[k], z.dtype) if isinstance(z, np.ndarray) else s[k] for k, z in self._zero.items()}
    by_reason = {}
    for f in s['failures']:
      by_reason[f['reason']] = by_reason.get(f['reason'], 0) + 1
    return _add(acc, dict(one, units=1, by_reason=by_reason))

  def merge_accumulators(self, accs):
    total = self.create_accumulator()
    for a in accs:
      total = _add(total, a)
    return total

  def extract_output(self, acc):
    return acc


def _add(a, b):
  """a + b for numbers and arrays; for dicts, by key (a key of one only is kept as it is), in a's order first."""
  if isinstance(a, dict):
    keys = list(a) + [k for k in b if k not in a]
    return {k: _add(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in keys}
  return a + b


PREPROCESS_ZERO = {'read': 0, 'written': {s: 0 for s in schema.SPLITS},
                   'hist': np.zeros((schema.AB_HIST_BINS,) * 2, np.int64)}


def write_failures(output, failures):
  """failures.jsonl: one line per input that became no output, sorted by path (then reason); returns them so."""
  failures = sorted(failures, key=lambda f: (f['path'], f['reason']))
  resume.write_atomically(f'{output}/{schema.FAILURES_FILE}',
                          ''.join(json.dumps(f) + '\n' for f in failures).encode(), output)
  return failures


def finalize(_, output, info, job, totals, shard_names, failures):
  """failures.jsonl, then metadata.json (the mark of a finished job), then remove .work/."""
  failures = write_failures(output, failures)
  meta = dict(info)
  meta['counts'] = dict(totals['written'])
  meta['shards'] = {split: sorted(name for s, name in shard_names if s == split) for split in schema.SPLITS}
  meta['ab_histogram'] = {'bin': schema.AB_HIST_BIN, 'min': schema.AB_HIST_MIN, 'bins': schema.AB_HIST_BINS,
                          'axes': ['a', 'b'], 'counts': np.asarray(totals['hist']).astype(int).tolist()}
  meta['failures'] = {'count': len(failures), 'by_reason': dict(sorted(totals['by_reason'].items())),
                      'report': schema.FAILURES_FILE}
  meta['job'] = dict(job, inputs=totals['read'], units=totals['units'])
  resume.write_atomically(f'{output}/{schema.METADATA_FILE}', schema.metadata_json(meta).encode(), output)
  resume.finish(output)
