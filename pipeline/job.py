"""The Beam graph of the preprocessing job: read, decode, letterbox to Lab, embed, write shards and metadata.

pipeline/preprocess.py is its command line. Classes live here, not in the module run as __main__, because
workers (Dataflow, or local multi-processing) unpickle them by module name.
"""
import json
import posixpath
import time
from typing import NamedTuple, Optional

import apache_beam as beam
import numpy as np
from absl import app, logging
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipeline import decode, quiet, schema, sources
from pipeline.embed_handler import EmbedderHandler

NAMESPACE = 'colorizer'


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
    q, box, l_canvas, hist = (t.numpy() for t in self._prepare(rgb))
    record = {'key': src.key, 'label': src.label, 'synset': src.synset, 'lab': schema.encode_lab(q), 'box': box,
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
