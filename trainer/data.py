"""The tf.data input: the preprocessing job's records, read only through pipeline.schema.

Shuffled file list -> parallel interleave -> (cache) -> shuffle buffer -> batch -> vectorised parse and inflate
-> random flips and zoom squares drawn (the content boxes follow them) -> hint places drawn inside the new
boxes (--hints) -> prefetch. Every stage after the file list
runs in tf.data's own threads, so the training step never waits on it (benchmarks/train.py measures that).

The host sends the stored uint8 planes, a quarter of float32 Lab's bytes, and the augmentation as parameters;
`on_device`, called inside the train step, turns them into Lab and applies the flips and zooms where the model
runs. On a GPU that work is nearly free; on the host it was over half of the 3.6 ms of CPU a record took
(BUILD_NOTES.md).
"""
import concurrent.futures
import posixpath

import tensorflow as tf
from absl import logging

from pipeline import embedder, schema
from trainer import hints as hints_lib


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


def _flip_boxes(box, flip, size):
  """Content boxes [B, 4] of the images `flip` [B] mirrors left-right on a canvas of `size`."""
  left = tf.where(flip, size - box[:, 1] - box[:, 3], box[:, 1])
  return tf.stack([box[:, 0], left, box[:, 2], box[:, 3]], axis=1)


def _zoom_squares(box, size, min_scale):
  """Random squares to zoom into (side min_scale..1 of each content box's long side): crop_and_resize boxes.

  The square lies inside the content along each side the content is longer than it, and holds the whole extent
  along a shorter side; outside the canvas is black (Lab 0), as the letterbox bars are. Returns (boxes [B, 4]
  float32 for tf.image.crop_and_resize, the content boxes [B, 4] int32 after the zoom). The stored embedding
  stays that of the whole photo: the crop keeps most of what it shows.
  """
  n, size = tf.shape(box)[0], tf.cast(size, tf.float32)
  t, l, h, w = (tf.cast(box[:, i], tf.float32) for i in range(4))
  side = tf.random.uniform([n], min_scale, 1.0) * tf.maximum(h, w)

  def start(begin, extent):   # uniform over the positions allowed along one axis
    low, high = tf.minimum(begin, begin + extent - side), tf.maximum(begin, begin + extent - side)
    return low + tf.random.uniform([n]) * (high - low)

  y0, x0 = start(t, h), start(l, w)
  # crop_and_resize samples pixel centres: output pixel i is at y0 + (i + 0.5) side / size in edge units.
  first, last = 0.5 * side / size - 0.5, (size - 0.5) * side / size - 0.5
  squares = tf.stack([y0 + first, x0 + first, y0 + last, x0 + last], axis=1) / (size - 1.0)

  def visible(begin, extent, origin):   # the content's span inside the square, in output pixels
    lo = tf.round((tf.maximum(begin, origin) - origin) * size / side)
    hi = tf.round((tf.minimum(begin + extent, origin + side) - origin) * size / side)
    return tf.clip_by_value(lo, 0.0, size), tf.clip_by_value(hi, 0.0, size)

  (top, bottom), (left, right) = visible(t, h, y0), visible(l, w, x0)
  new_box = tf.cast(tf.stack([top, left, tf.maximum(bottom - top, 1.0), tf.maximum(right - left, 1.0)], 1),
                    tf.int32)
  return squares, new_box


def augment_on_device(lab, flip=None, squares=None):
  """Apply the flips and zoom squares the input pipeline drew to Lab images [B, S, S, 3] (float32)."""
  if flip is not None:
    lab = tf.where(flip[:, None, None, None], tf.reverse(lab, axis=[2]), lab)
  if squares is not None:
    lab = tf.image.crop_and_resize(lab, squares, tf.range(tf.shape(lab)[0]), tf.shape(lab)[1:3],
                                   extrapolation_value=0.0)
  return lab


def on_device(batch):
  """A batch of `dataset` -> (features {'l', 'embedding', 'hints'}, targets {'ab', 'box'}), float32 Lab.

  Called inside the train step, so that the conversion and the augmentation run on the accelerator. The hints
  are the drawn squares painted with their mean true ab after the augmentation; none when none were drawn.
  """
  lab = augment_on_device(schema.lab_from_planes(batch['planes']), batch.get('flip'), batch.get('squares'))
  l, ab = lab[..., :1], lab[..., 1:]
  if 'hint_yx' in batch:
    hints = hints_lib.from_truth(ab, batch['hint_yx'], batch['hint_half'], batch['hint_valid'])
  else:
    hints = hints_lib.none(l)
  return {'l': l, 'embedding': batch['embedding'], 'hints': hints}, {'ab': ab, 'box': batch['box']}


def dataset(files, meta, batch_size, training, seed=0, cache=False, shuffle_buffer=1024, num_workers=1,
            zoom=1.0, hints=False):
  """Batches {'planes' uint8 [B, 3, S, S], 'box', 'embedding'[, 'flip', 'squares', 'hint_*']}; `on_device`
  converts them.

  training: shuffled and repeated forever, whole batches, half of them flipped, and with zoom < 1 zoomed into
  random squares of side zoom..1 of the content (_zoom_squares); the content boxes already follow. batch_size is
  the global batch (the distributed dataset splits it over the replicas). hints (training only): random hint
  places inside each image's content (trainer/hints.sample). seed must be the same on every worker:
  the FILE auto-shard policy gives each worker its share of one shuffled order.
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
  size = meta['image_size']

  def prepare(serialized):
    r = schema.parse_batch(serialized, meta, decode_lab=False)
    batch = {'planes': r['lab'], 'box': r['box'], 'embedding': r['embedding']}
    if training:
      batch['flip'] = tf.random.uniform([tf.shape(r['box'])[0]]) < 0.5
      batch['box'] = _flip_boxes(batch['box'], batch['flip'], size)
      if zoom < 1.0:
        batch['squares'], batch['box'] = _zoom_squares(batch['box'], size, zoom)
      if hints:
        batch.update(hints_lib.sample(batch['box'], size))
    return batch

  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()
  # FILE: each worker reads whole shards of its own; with fewer shards than workers, DATA: every worker reads
  # everything and keeps its share of the records.
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.FILE if len(files) >= num_workers
      else tf.data.experimental.AutoShardPolicy.DATA)
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
