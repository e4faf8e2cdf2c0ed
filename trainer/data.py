"""The tf.data input: the preprocessing job's records, read only through pipeline.schema.

Shuffled file list -> parallel interleave -> (cache) -> shuffle buffer -> batch -> vectorised parse ->
random horizontal flip of image and content box -> prefetch. Every stage after the file list runs in tf.data's
own threads, so the training step never waits on it (benchmarks/train.py measures that).
"""
import concurrent.futures
import posixpath

import tensorflow as tf
from absl import logging

from pipeline import embedder, schema


def load_metadata(data_dir):
  """metadata.json, checked: schema version (by the schema module), one known embedder, the listed shards."""
  meta = schema.read_metadata(data_dir)
  path = posixpath.join(data_dir, schema.METADATA_FILE)
  info = meta.get('embedder')
  if not isinstance(info, dict) or not isinstance(info.get('name'), str):
    raise schema.SchemaError(f'{path}: "embedder" is {info!r}, not one embedder: these records mix embedders '
                             'or come from another program. Preprocess them again into an empty directory.')
  if info['name'] not in embedder.SPECS or info.get('dim') != embedder.SPECS[info['name']].dim:
    raise schema.SchemaError(f'{path}: unknown embedder {info.get("name")!r} with dim {info.get("dim")!r}; '
                             f'this code knows {", ".join(embedder.SPECS)}')
  for split in schema.SPLITS:
    listed = set(meta.get('shards', {}).get(split, []))
    found = {posixpath.basename(f) for f in tf.io.gfile.glob(schema.shard_glob(data_dir, split))}
    if found - listed:
      raise schema.SchemaError(
          f'{posixpath.join(data_dir, sorted(found - listed)[0])} is not listed in {path}: it was written by '
          'another preprocessing run, possibly with another embedder, and the directory mixes the two. '
          'Delete the files metadata.json does not list, or preprocess again into an empty directory.')
    if listed - found:
      raise schema.SchemaError(f'{posixpath.join(data_dir, sorted(listed - found)[0])} is listed in {path} but '
                               'missing: copy the whole records directory, or preprocess again.')
  if info.get('weights') == 'random':
    logging.warning('=' * 78)
    logging.warning('%s was preprocessed with a RANDOMLY INITIALISED %s embedder: the embeddings carry no '
                    'semantics. Fine for tests and demos; for real training preprocess with '
                    '--embedder-weights imagenet (or a weights file).', data_dir, info['name'])
    logging.warning('=' * 78)
  return meta


def _first_line(error):
  text = getattr(error, 'message', None) or str(error)
  return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _check_shard(path, meta):
  """Parse the shard's first record; a SchemaError naming the file if it is not a record of this dataset."""
  try:
    for raw in tf.data.TFRecordDataset(path).take(1):
      schema.parse_batch(raw[None], meta)
  except (tf.errors.OpError, ValueError) as e:
    raise schema.SchemaError(
        f'{path} does not hold records of this dataset (image size {meta["image_size"]}, {meta["embedder"]["dim"]}'
        f'-d {meta["embedder"]["name"]} embeddings): {_first_line(e)}. Preprocess again, or remove the file '
        'and its entry in metadata.json.') from None


def shards(data_dir, split, meta):
  """The split's shard files, each checked by reading its first record (in parallel: gs:// latency)."""
  files = schema.list_shards(data_dir, split)
  with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda f: _check_shard(f, meta), files))
  return files


def find_corrupt_shard(files, meta):
  """Read every record of every file; the first (file, error) that fails, or None. For error reports only."""
  parse = tf.function(lambda raw: schema.parse_batch(raw, meta))
  for path in files:
    try:
      for raw in tf.data.TFRecordDataset(path).batch(64):
        parse(raw)
    except (tf.errors.OpError, ValueError) as e:
      return path, _first_line(e)
  return None


def _flip(lab, box):
  """Mirror half the images of a batch left-right, and their content boxes with them."""
  flip = tf.random.uniform([tf.shape(lab)[0]]) < 0.5
  lab = tf.where(flip[:, None, None, None], tf.reverse(lab, axis=[2]), lab)
  left = tf.where(flip, tf.shape(lab)[2] - box[:, 1] - box[:, 3], box[:, 1])
  return lab, tf.stack([box[:, 0], left, box[:, 2], box[:, 3]], axis=1)


def dataset(files, meta, batch_size, training, seed=0, cache=False, shuffle_buffer=1024, num_workers=1):
  """Batches of ({'l', 'embedding'}, {'ab', 'box'}): features for the model, targets for the loss.

  training: shuffled and repeated forever, whole batches, flipped. batch_size is the global batch (the
  distributed dataset splits it over the replicas). seed must be the same on every worker: the FILE auto-shard
  policy gives each worker its share of one shuffled order.
  """
  ds = tf.data.Dataset.from_tensor_slices(files)
  if training:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  ds = ds.interleave(tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
  if cache:
    ds = ds.cache()  # the compact serialized records, not the decoded images
  if training:
    ds = ds.shuffle(shuffle_buffer, seed=seed).repeat()
  ds = ds.batch(batch_size, drop_remainder=training)

  def prepare(serialized):
    r = schema.parse_batch(serialized, meta)
    lab, box = _flip(r['lab'], r['box']) if training else (r['lab'], r['box'])
    return {'l': lab[..., :1], 'embedding': r['embedding']}, {'ab': lab[..., 1:], 'box': box}

  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()
  # FILE: each worker reads whole shards of its own; with fewer shards than workers, DATA: every worker reads
  # everything and keeps its share of the records.
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.FILE if len(files) >= num_workers
      else tf.data.experimental.AutoShardPolicy.DATA)
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
