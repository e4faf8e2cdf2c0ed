r"""The Beam job: photos -> letterboxed CIE Lab + frozen greyscale embeddings -> sharded TFRecords.

  python -m pipeline.preprocess --input PATH|GLOB|gs://... [--tfds NAME] --output DIR \
      [--embedder inception_resnet_v2|mobilenet_v2] [--embedder-weights imagenet|random|PATH] \
      [--runner DirectRunner|DataflowRunner] [any Beam / Dataflow option]

Writes to DIR: train-SSSSS-of-NNNNN.tfrecord and val-... shards (record contract: pipeline/schema.py),
metadata.json and failures.jsonl (one line per rejected input: path and reason). Flags this module does not
define are handed to Beam's PipelineOptions unchanged. Without --input or --tfds it reads the colour sample
photos that scikit-image ships, so it runs anywhere offline.
"""
import json
import logging as std_logging
import os
import posixpath
import sys
import time
from typing import NamedTuple, Optional

from pipeline import quiet

quiet.tensorflow()  # before Beam or Keras import it, so its start-up notices stay off the terminal

import apache_beam as beam
import numpy as np
from absl import app, flags, logging
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from pipeline import decode, embedder, schema, sources
from pipeline.embed_handler import EmbedderHandler

NAMESPACE = 'colorizer'

flags.DEFINE_multi_string('input', [], 'Folder (recursive), glob, file or gs:// prefix; repeatable. '
                          'Default: the colour sample photos shipped with scikit-image.')
flags.DEFINE_string('tfds', None, 'Read a TFDS image dataset by name instead (e.g. imagenet2012).')
flags.DEFINE_string('tfds-split', 'train', 'TFDS split to read (e.g. train, validation, train[:1%]).')
flags.DEFINE_string('tfds-data-dir', None, 'TFDS data_dir (where prepared datasets live).')
flags.DEFINE_string('tfds-manual-dir', None, 'Prepare the TFDS dataset from this manual_dir first '
                    '(imagenet2012: the folder holding ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar).')
flags.DEFINE_string('output', None, 'Output directory (local or gs://).')
flags.DEFINE_enum('embedder', 'inception_resnet_v2', list(embedder.SPECS), 'Frozen ImageNet classifier.')
flags.DEFINE_string('embedder-weights', 'imagenet', "'imagenet' (Keras download), 'random' (tests only) or "
                    'the path (local or gs://) of a Keras weights file for the full 1000-class model.')
flags.DEFINE_enum('embedder-precision', 'float32', list(embedder.PRECISIONS), 'Embedder compute precision.')
flags.DEFINE_integer('embedder-batch-size', 32, 'Largest batch RunInference gives the embedder.')
flags.DEFINE_integer('image-size', 256, 'Side of the square letterbox canvas.')
flags.DEFINE_float('val-fraction', 0.1, 'Fraction of inputs (by key hash) in the val split.')
flags.DEFINE_integer('num-shards', 8, 'Train shards (val gets the same share of shards as of records, >= 1).')
flags.DEFINE_integer('max-pixels', decode.DEFAULT_MAX_PIXELS, 'Reject images with more pixels (bomb guard).')
FLAGS = flags.FLAGS


class Source(NamedTuple):
  """One input: `data` is None for files (read by the worker, so only paths travel through Create)."""
  key: str
  relative_key: str
  synset: str
  label: int
  data: Optional[bytes] = None


def _failure(key, reason, detail):
  Metrics.counter(NAMESPACE, f'failed_{reason}').inc()
  return beam.pvalue.TaggedOutput('failed', {'path': key, 'reason': reason, 'detail': detail})


class Prepare(beam.DoFn):
  """Source -> (partial record, uint8 L canvas for the embedder); undecodable inputs go to 'failed'."""

  def __init__(self, image_size, max_pixels, val_fraction):
    self._size, self._max_pixels, self._val_fraction = image_size, max_pixels, val_fraction
    self._read = Metrics.counter(NAMESPACE, 'read')

  def setup(self):
    import tensorflow as tf
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
      # zlib level 1: 6 ms instead of 37 ms at the default level, for records 15 % larger (still ~0.6x the JPEG).
      png = tf.io.encode_png(q, compression=1)
      return png, box, q[..., 0], schema.ab_histogram(schema.dequantize_lab(q), box)

    self._prepare = prepare
    self._count, self._started, self._last_log = 0, time.time(), time.time()

  def process(self, src):
    self._read.inc()
    self._progress()
    data = src.data
    if data is None:
      try:
        with FileSystems.open(src.key, compression_type='uncompressed') as f:
          data = f.read()
      except Exception as e:  # permissions, vanished files, network: the job goes on
        yield _failure(src.key, 'unreadable', f'{type(e).__name__}: {e}')
        return
    try:
      rgb, size = decode.decode(data, self._max_pixels, min_side=self._size)
    except decode.DecodeError as e:
      yield _failure(src.key, e.reason, e.detail)
      return
    png, box, l_canvas, hist = (t.numpy() for t in self._prepare(rgb))
    record = {'key': src.key, 'label': src.label, 'synset': src.synset, 'lab': png, 'box': box,
              'size': size, 'hist': hist, 'split': sources.split_of(src.relative_key, self._val_fraction)}
    yield record, l_canvas

  def _progress(self):
    self._count += 1
    now = time.time()
    if now - self._last_log >= 30:
      self._last_log = now
      logging.info('prepared %d images on this worker (%.1f images/s)', self._count,
                   self._count / (now - self._started))


def _serialize(keyed_result):
  record, result = keyed_result
  Metrics.counter(NAMESPACE, f'written_{record["split"]}').inc()
  return schema.serialize(record['key'], record['label'], record['synset'], record['lab'], record['box'],
                          record['size'], result.inference)


def _embedding_failures(failed):
  batch, error = failed
  for record, _ in batch:
    Metrics.counter(NAMESPACE, 'failed_embedding').inc()
    yield {'path': record['key'], 'reason': 'embedding', 'detail': str(error)[:500]}


def _files(pipeline, inputs):
  """PCollection of Source for files, from patterns (read lazily by the workers)."""
  expanded = [sources.expand(i) for i in inputs]
  roots = {pattern: root for pattern, root, _ in expanded}
  images_only = {pattern for pattern, _, only in expanded if only}

  def to_source(metadata, pattern):
    rel = posixpath.relpath(metadata.path, roots[pattern]) if roots[pattern] else metadata.path
    synset, label = sources.label_of(metadata.path)
    return Source(metadata.path, rel, synset, label)

  outputs = []
  for i, (pattern, _, _) in enumerate(expanded):
    matched = (pipeline | f'Pattern{i}' >> beam.Create([pattern])
               | f'Match{i}' >> fileio.MatchAll()
               | f'Images{i}' >> beam.Filter(
                   lambda m, keep_all: keep_all or sources.is_image_name(m.path), pattern not in images_only)
               | f'Source{i}' >> beam.Map(to_source, pattern))
    outputs.append(matched)
  return outputs | 'AllFiles' >> beam.Flatten()


def _tfds(pipeline, name, split, data_dir, manual_dir):
  import tensorflow_datasets as tfds
  builder = tfds.builder(name, data_dir=data_dir)
  if manual_dir:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  image_key = next((k for k, f in builder.info.features.items() if isinstance(f, tfds.features.Image)), None)
  if image_key is None:
    raise app.UsageError(f'TFDS dataset {name} has no image feature')
  label_feature = builder.info.features.get('label') if hasattr(builder.info.features, 'get') else None
  names = list(getattr(label_feature, 'names', None) or [])
  synsets = sources.imagenet_synsets()

  def to_source(example):
    key = example['tfds_id'].decode()
    synset, label = '', -1
    if 'label' in example:
      label = int(example['label'])
      name = names[label] if label < len(names) else ''
      synset, label = (name, synsets[name]) if name in synsets else ('', label)
    return Source(f'tfds://{name_split}/{key}', key, synset, label, bytes(example[image_key]))

  name_split = f'{name}/{split}'
  return (pipeline
          | 'ReadTFDS' >> tfds.beam.ReadFromTFDS(
              builder, split, decoders={image_key: tfds.decode.SkipDecoding()},
              read_config=tfds.ReadConfig(add_tfds_id=True))
          | 'AsNumpy' >> beam.Map(tfds.as_numpy)
          | 'TFDSSource' >> beam.Map(to_source))


def _write_metadata(_, output, info, train_files, val_files, counts_train, counts_val, histogram, failures):
  meta = dict(info)
  meta['counts'] = {'train': counts_train, 'val': counts_val}
  meta['shards'] = {'train': sorted(posixpath.basename(f) for f in train_files),
                    'val': sorted(posixpath.basename(f) for f in val_files)}
  meta['ab_histogram'] = {'bin': schema.AB_HIST_BIN, 'min': schema.AB_HIST_MIN, 'bins': schema.AB_HIST_BINS,
                          'axes': ['a', 'b'], 'counts': np.asarray(histogram).astype(int).tolist()}
  meta['failures'] = {'count': sum(failures.values()), 'by_reason': dict(sorted(failures.items())),
                      'report': schema.FAILURES_FILE}
  with FileSystems.create(posixpath.join(output, schema.METADATA_FILE)) as f:
    f.write(schema.metadata_json(meta).encode())


def build(pipeline, cfg):
  """Adds the job to `pipeline`; cfg is a dict of this module's flag values (see _config)."""
  out = cfg['output']
  if cfg['tfds']:
    items = _tfds(pipeline, cfg['tfds'], cfg['tfds_split'], cfg['tfds_data_dir'], cfg['tfds_manual_dir'])
  else:
    items = _files(pipeline, cfg['inputs'])
  prepared = (items
              | 'Spread' >> beam.Reshuffle()  # fan the (cheap) listing out over workers
              | 'Prepare' >> beam.ParDo(Prepare(cfg['image_size'], cfg['max_pixels'], cfg['val_fraction']))
              .with_outputs('failed', main='ok'))
  handler = KeyedModelHandler(EmbedderHandler(cfg['embedder'], cfg['embedder_weights'],
                                              cfg['embedder_precision'], cfg['image_size'],
                                              cfg['embedder_batch_size']))
  embedded, dlq = prepared.ok | 'Embed' >> RunInference(handler).with_exception_handling()
  by_split = embedded | 'Split' >> beam.Partition(lambda kv, n: schema.SPLITS.index(kv[0]['split']),
                                                   len(schema.SPLITS))
  files, counts = {}, {}
  for split, records in zip(schema.SPLITS, by_split):
    shards = cfg['num_shards'] if split == 'train' else cfg['val_shards']
    files[split] = (records
                    | f'Serialize{split}' >> beam.Map(_serialize)
                    | f'Write{split}' >> beam.io.WriteToTFRecord(
                        schema.shard_prefix(out, split), file_name_suffix='.tfrecord', num_shards=shards,
                        shard_name_template='-SSSSS-of-NNNNN'))
    counts[split] = records | f'Count{split}' >> beam.combiners.Count.Globally()
  histogram = (by_split[schema.SPLITS.index('train')]
               | 'Histogram' >> beam.Map(lambda kv: kv[0]['hist'])
               | 'SumHistogram' >> beam.CombineGlobally(
                   lambda hs: sum(hs, np.zeros((schema.AB_HIST_BINS,) * 2, np.int64))))
  failures = ((prepared.failed, dlq.failed_inferences | 'EmbedFailures' >> beam.FlatMap(_embedding_failures))
              | 'AllFailures' >> beam.Flatten())
  _ = (failures
       | 'FailureLines' >> beam.Map(json.dumps)
       | 'WriteFailures' >> beam.io.WriteToText(posixpath.join(out, schema.FAILURES_FILE), num_shards=1,
                                                shard_name_template=''))
  reasons = failures | 'Reason' >> beam.Map(lambda f: f['reason']) | beam.combiners.Count.PerElement()
  _ = (pipeline
       | 'Once' >> beam.Create([None])
       | 'WriteMetadata' >> beam.Map(
           _write_metadata, out, cfg['info'],
           beam.pvalue.AsList(files['train']), beam.pvalue.AsList(files['val']),
           beam.pvalue.AsSingleton(counts['train']), beam.pvalue.AsSingleton(counts['val']),
           beam.pvalue.AsSingleton(histogram), beam.pvalue.AsDict(reasons)))


def _config(argv):
  """Parse this module's flags (fresh each call, so tests can call run() repeatedly); the rest -> Beam."""
  FLAGS.unparse_flags()
  rest = FLAGS(list(argv), known_only=True)
  if not FLAGS.output:
    raise app.UsageError('--output DIR is required (local folder or gs://bucket/path)')
  get = lambda name: FLAGS[name].value
  inputs = get('input') or ([] if get('tfds') else sources.sample_photos())
  for spec in inputs:
    pattern, _, _ = sources.expand(spec)
    if not FileSystems.match([pattern], limits=[1])[0].metadata_list:
      raise app.UsageError(f'--input {spec}: nothing matches {pattern}; check the path (and credentials '
                           'for gs://)')
  val_fraction = get('val-fraction')
  if not 0.0 <= val_fraction < 1.0:
    raise app.UsageError(f'--val-fraction must be in [0, 1), got {val_fraction}')
  num_shards = get('num-shards')
  if num_shards < 1:
    raise app.UsageError('--num-shards must be >= 1')
  weights = get('embedder-weights')
  info = {
      'image_size': get('image-size'),
      'embedder': embedder.describe(get('embedder'), weights, get('embedder-precision')),
      'record': {'format': 'tfrecord', 'features': list(schema.FEATURES),
                 'lab': 'PNG of uint8 [L * 255/100, a + 128, b + 128]', 'embedding': '<f2 bytes',
                 'box': 'top, left, height, width', 'size': 'source height, width'},
      'inputs': [f'tfds:{get("tfds")}/{get("tfds-split")}'] if get('tfds') else inputs,
      'val_fraction': val_fraction,
  }
  cfg = {
      'inputs': inputs, 'tfds': get('tfds'), 'tfds_split': get('tfds-split'),
      'tfds_data_dir': get('tfds-data-dir'), 'tfds_manual_dir': get('tfds-manual-dir'),
      'output': FLAGS.output.rstrip('/'), 'embedder': get('embedder'), 'embedder_weights': weights,
      'embedder_precision': get('embedder-precision'), 'embedder_batch_size': get('embedder-batch-size'),
      'image_size': get('image-size'), 'val_fraction': val_fraction, 'num_shards': num_shards,
      'val_shards': max(1, round(num_shards * val_fraction / (1.0 - val_fraction))),
      'max_pixels': get('max-pixels'), 'info': info,
  }
  return cfg, rest[1:]


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
  for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))['counters']:
    counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + (c.committed or c.attempted or 0)
  return counters


def _model_load_seconds(result):
  """The one-off embedder load RunInference reports (a long job amortises it; a short benchmark does not)."""
  seconds = 0.0
  for d in result.metrics().query(MetricsFilter())['distributions']:
    if d.key.metric.name.endswith('load_model_latency_milli_secs'):
      seconds = max(seconds, ((d.committed or d.attempted).max or 0) / 1000.0)
  return seconds


def run(argv, test_pipeline=None):
  """Run the job; returns the summary dict (also printed). `test_pipeline` lets tests inject a pipeline."""
  cfg, beam_args = _config(argv)
  started = time.time()
  pipeline = test_pipeline or beam.Pipeline(options=_pipeline_options(beam_args))
  build(pipeline, cfg)
  result = pipeline.run()
  result.wait_until_finish()
  seconds = time.time() - started
  counters = _counters(result)
  summary = {
      'output': cfg['output'],
      'read': counters.get('read', 0),
      'written': {s: counters.get(f'written_{s}', 0) for s in schema.SPLITS},
      'failed': {k[len('failed_'):]: v for k, v in sorted(counters.items()) if k.startswith('failed_')},
      'seconds': round(seconds, 1),
  }
  summary['images_per_second'] = round(sum(summary['written'].values()) / seconds, 2) if seconds else 0.0
  summary['model_load_seconds'] = _model_load_seconds(result)
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
  print('\n'.join(lines), flush=True)


def main(_):
  std_logging.getLogger('apache_beam').setLevel(std_logging.WARNING)
  # RunInference's optional ModelManager import fails without torch, after which every model load logs that
  # memory usage is unavailable (to the root logger): nothing a user can act on.
  std_logging.getLogger().addFilter(lambda r: not r.getMessage().startswith('Resource module is not available'))
  try:
    summary = run(sys.argv)
  except (embedder.EmbedderError, app.UsageError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  _print_summary(summary)
  if sum(summary['written'].values()) == 0:
    print('error: no record was written; see the failures report', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  # Only this module's flags are parsed here: the rest go to Beam's PipelineOptions (run() parses again).
  app.run(main, flags_parser=lambda argv: FLAGS(argv, known_only=True))
