"""The record contract between the stages: keys, encodings, metadata; the one writer and the readers.

One tf.train.Example per image:
  key        bytes     the source key (path, or TFDS id)
  label      int64     ImageNet class index (Keras / TFDS order), -1 when unknown
  synset     bytes     WordNet id such as n01440764, empty when unknown
  lab        bytes     the S x S Lab canvas quantised to 8 bits (L * 255/100, a + 128, b + 128), stored as
                       zlib (level 1) of three planes L, a, b, each row delta-coded left to right modulo 256
  box        int64[4]  content box on the canvas: top, left, height, width
  size       int64[2]  the source image's height and width (after EXIF orientation)
  embedding  bytes     the frozen classifier's output, little-endian float16

Stored Lab error is at most 100/255/2 = 0.196 (L) and 0.5 (a, b). Version 1 stored the codes as an RGB PNG;
version 2's planes inflate in about half the time and the row deltas are undone on the training device (a
cumulative sum), so the host only inflates bytes (BUILD_NOTES.md, GPU-ready trainer). The module imports TensorFlow only
inside the functions that need it, so that TF-free consumers (pipeline.npreader, pipeline.inspect) can
use its constants and metadata helpers: the `tfrecord` package cannot share a process with TensorFlow.
"""
import json
import posixpath
import re
import struct
import zlib

import google_crc32c
import numpy as np

SCHEMA_VERSION = 2
LAB_ENCODING = ('zlib (level 1) of uint8 planes [L * 255/100, a + 128, b + 128], each row delta-coded left to '
                'right modulo 256')
LAB_ZLIB_LEVEL = 1   # the writer's cost of a PNG at level 1; level 6 is 7 % smaller and 5x slower to write
METADATA_FILE = 'metadata.json'
FAILURES_FILE = 'failures.jsonl'
SPLITS = ('train', 'val')

L_SCALE = 255.0 / 100.0
AB_OFFSET = 128.0
EMBEDDING_DTYPE = '<f2'   # numpy's little-endian float16: the embedding's stored bytes

# ab histogram of the training split (for class rebalancing): 23 x 23 cells of 10 Lab units; cell i covers
# [-115 + 10 i, -105 + 10 i) and is centred on -110 + 10 i, as Zhang et al. (2016) centre their ab bins, so the
# trainer's in-gamut classes are a subset of these cells. Axis 0 is a, axis 1 is b.
AB_HIST_BIN = 10
AB_HIST_MIN = -115
AB_HIST_BINS = 23

FEATURES = ('key', 'label', 'synset', 'lab', 'box', 'size', 'embedding')


class SchemaError(ValueError):
  """Data that does not follow this contract (wrong version, missing files, mixed embedders)."""


def shard_prefix(data_dir, split):
  return posixpath.join(data_dir, split)


def shard_glob(data_dir, split):
  return shard_prefix(data_dir, split) + '-*-of-*.tfrecord'


# ---------------------------------------------------------------- TensorFlow: writer side

def quantize_lab(lab):
  """Lab float [..., 3] -> uint8 [..., 3] as stored."""
  import tensorflow as tf
  l, ab = lab[..., :1], lab[..., 1:]
  q = tf.concat([l * L_SCALE, ab + AB_OFFSET], axis=-1)
  return tf.cast(tf.clip_by_value(tf.round(q), 0.0, 255.0), tf.uint8)


def dequantize_lab(q):
  """uint8 (or integral float) [..., 3] as stored -> Lab float32."""
  import tensorflow as tf
  q = tf.cast(q, tf.float32)
  return tf.concat([q[..., :1] / L_SCALE, q[..., 1:] - AB_OFFSET], axis=-1)


def ab_cells(ab):
  """ab [..., 2] -> int32 [..., 2] (a cell, b cell) indices of the histogram grid, clipped at its edges.

  The one binning of ab values: the histogram here, the trainer's in-gamut classes and rebalancing weights,
  and the rebalanced AuC metric all use it.
  """
  import tensorflow as tf
  cell = tf.floor((tf.cast(ab, tf.float32) - AB_HIST_MIN) / AB_HIST_BIN)
  return tf.clip_by_value(tf.cast(cell, tf.int32), 0, AB_HIST_BINS - 1)


def ab_histogram(lab, box):
  """Counts of the content box's ab values in the metadata's grid: int64 [AB_HIST_BINS, AB_HIST_BINS]."""
  import tensorflow as tf
  cell = ab_cells(tf.reshape(lab[box[0]:box[0] + box[2], box[1]:box[1] + box[3], 1:], [-1, 2]))
  counts = tf.math.bincount(cell[:, 0] * AB_HIST_BINS + cell[:, 1], minlength=AB_HIST_BINS ** 2,
                            maxlength=AB_HIST_BINS ** 2, dtype=tf.int64)
  return tf.reshape(counts, [AB_HIST_BINS, AB_HIST_BINS])


def serialize(key, label, synset, lab_planes, box, size, embedding):
  """One record's bytes; lab_planes is the stored canvas (encode_lab). Every field is a bytes or int64 list:
  float lists are slow to build and big."""
  from tensorflow.core.example import example_pb2, feature_pb2
  f = feature_pb2.Feature
  feats = {
      'key': f(bytes_list=feature_pb2.BytesList(value=[key.encode()])),
      'label': f(int64_list=feature_pb2.Int64List(value=[int(label)])),
      'synset': f(bytes_list=feature_pb2.BytesList(value=[synset.encode()])),
      'lab': f(bytes_list=feature_pb2.BytesList(value=[lab_planes])),
      'box': f(int64_list=feature_pb2.Int64List(value=[int(v) for v in box])),
      'size': f(int64_list=feature_pb2.Int64List(value=[int(v) for v in size])),
      'embedding': f(bytes_list=feature_pb2.BytesList(
          value=[np.asarray(embedding, dtype=EMBEDDING_DTYPE).tobytes()])),
  }
  # deterministic: map entries in key order. Otherwise their order follows the process's string hashing, and the
  # same record had other bytes in another worker process (seen: in-process vs multi_processing runs).
  return example_pb2.Example(features=feature_pb2.Features(feature=feats)).SerializeToString(deterministic=True)


def frame(record):
  """A record's bytes in a TFRecord file: its length (uint64), the masked CRC-32C of the length, the record, the
  masked CRC-32C of the record (little-endian), as TensorFlow's writer frames it. Framed records concatenate into
  a valid file, which is how the job assembles its shards from the work units' pieces."""
  length = struct.pack('<Q', len(record))
  return b''.join([length, struct.pack('<I', _masked_crc32c(length)),
                   record, struct.pack('<I', _masked_crc32c(record))])


def _masked_crc32c(data):
  # TFRecord's mask: a CRC of data that holds CRCs of itself is weak, so the stored value is rotated and offset.
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


# ---------------------------------------------------------------- TensorFlow: reader side

def parse_batch(serialized, metadata, decode_lab=True):
  """A batch of serialized records -> dict of tensors; vectorised parse (call it after .batch()).

  Returns lab [B, S, S, 3] float32 Lab, box [B, 4] int32, size [B, 2] int32, embedding [B, D] float32,
  label [B] int64, key [B] string. With decode_lab=False, 'lab' is instead the stored planes, uint8
  [B, 3, S, S] still delta-coded: the training input sends these to the device, which calls lab_from_planes.
  """
  import tensorflow as tf
  s, dim = metadata['image_size'], metadata['embedder']['dim']
  parsed = tf.io.parse_example(serialized, {
      'key': tf.io.FixedLenFeature([], tf.string),
      'label': tf.io.FixedLenFeature([], tf.int64),
      'lab': tf.io.FixedLenFeature([], tf.string),
      'box': tf.io.FixedLenFeature([4], tf.int64),
      'size': tf.io.FixedLenFeature([2], tf.int64),
      'embedding': tf.io.FixedLenFeature([], tf.string),
  })
  # One inflate op over the whole batch; the reshape fails (InvalidArgument) on a record of another size.
  planes = tf.reshape(tf.io.decode_raw(tf.io.decode_compressed(parsed['lab'], 'ZLIB'), tf.uint8), [-1, 3, s, s])
  emb = _half_to_float(tf.io.decode_raw(parsed['embedding'], tf.uint16, little_endian=True))
  return {
      'key': parsed['key'],
      'label': parsed['label'],
      'lab': lab_from_planes(planes) if decode_lab else planes,
      'box': tf.cast(parsed['box'], tf.int32),
      'size': tf.cast(parsed['size'], tf.int32),
      'embedding': tf.ensure_shape(emb, [None, dim]),
  }


def lab_from_planes(planes):
  """Stored planes uint8 [..., 3, S, S] (row deltas) -> Lab float32 [..., S, S, 3]; runs on any device.

  Undoing the deltas is a cumulative sum along each row modulo 256, in float32: exact (255 x S < 2^24), and
  unlike int32 it has oneDNN kernels (int32 makes this CPU build print an error line) and fast GPU kernels.
  """
  import tensorflow as tf
  codes = tf.math.floormod(tf.cumsum(tf.cast(planes, tf.float32), axis=-1), 256.0)
  rank = len(planes.shape)
  codes = tf.transpose(codes, list(range(rank - 3)) + [rank - 2, rank - 1, rank - 3])
  return dequantize_lab(codes)


def _half_to_float(bits):
  """IEEE float16 bit patterns (uint16) -> float32, exactly (subnormals included).

  Arithmetic rather than tf.cast: casting float16 makes this CPU build print an oneDNN 'DT_HALF' error line in
  every process that reads records (the embeddings of softmax outputs are mostly subnormal halves anyway).
  """
  import tensorflow as tf
  bits = tf.cast(bits, tf.int32)
  exponent = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 10), 0x1f), tf.float32)
  mantissa = tf.cast(tf.bitwise.bitwise_and(bits, 0x3ff), tf.float32)
  magnitude = tf.where(exponent > 0, (1.0 + mantissa / 1024.0) * tf.pow(2.0, exponent - 15.0),
                       mantissa * 2.0 ** -24)
  return tf.where(bits >= 0x8000, -magnitude, magnitude)


def list_shards(data_dir, split):
  """The shard files of a split, sorted; a SchemaError naming the directory when there are none."""
  import tensorflow as tf
  files = sorted(tf.io.gfile.glob(shard_glob(data_dir, split)))
  if not files:
    raise SchemaError(f'{data_dir}: no {split} shards ({posixpath.basename(shard_glob(data_dir, split))}); '
                      'run python -m pipeline.preprocess --output to create them')
  return files


# ---------------------------------------------------------------- metadata (TF-free)

def _open(path, mode):
  import fsspec  # local paths and gs:// (gcsfs) alike, without TensorFlow
  return fsspec.open(path, mode)


def read_metadata(data_dir):
  """metadata.json of a records directory, checked against this schema version."""
  path = posixpath.join(data_dir, METADATA_FILE)
  try:
    with _open(path, 'r') as f:
      meta = json.load(f)
  except FileNotFoundError:
    raise SchemaError(f'{path} not found: is {data_dir} the --output of python -m pipeline.preprocess?') from None
  except json.JSONDecodeError as e:
    raise SchemaError(f'{path} is not valid JSON ({e}); re-run the preprocessing job') from None
  except OSError as e:  # gs:// without permission (gcsfs raises OSError('Forbidden: ...'))
    from pipeline import cloud
    raise SchemaError(cloud.explain(path, e)) from None
  version = meta.get('schema_version')
  if version != SCHEMA_VERSION:
    raise SchemaError(f'{path}: schema version {version!r}, this code reads version {SCHEMA_VERSION} '
                      f'(Lab stored as {LAB_ENCODING}); regenerate the records with this version of the code: '
                      f'python -m pipeline.preprocess --input SOURCES --output NEW_DIR (the inputs are listed '
                      f'under "inputs" in {path})')
  return meta


def metadata_json(meta):
  text = json.dumps(dict(meta, schema_version=SCHEMA_VERSION), indent=2, sort_keys=True)
  # One line per list of numbers (box, histogram rows) keeps the file readable.
  return re.sub(r'\[\s+([-0-9.e,\s]+?)\s+\]', lambda m: '[' + ' '.join(m.group(1).split()) + ']', text)


# ---------------------------------------------------------------- the Lab encoding (numpy, TF-free)

def encode_lab(q):
  """uint8 codes [S, S, 3] (quantize_lab) -> the stored bytes: zlib of the row-delta-coded planes."""
  planes = np.ascontiguousarray(np.transpose(np.asarray(q, np.uint8), (2, 0, 1)))
  deltas = np.diff(planes, axis=-1, prepend=np.uint8(0))   # uint8 arithmetic wraps modulo 256
  return zlib.compress(deltas.tobytes(), LAB_ZLIB_LEVEL)


def decode_lab_np(raw, size):
  """The stored bytes -> uint8 codes [S, S, 3]; a SchemaError if they are not an S x S canvas."""
  deltas = np.frombuffer(zlib.decompress(raw), np.uint8)
  if deltas.size != 3 * size * size:
    raise SchemaError(f'a stored Lab canvas of {deltas.size} bytes is not 3 x {size} x {size}')
  return np.transpose(np.cumsum(deltas.reshape(3, size, size), axis=-1, dtype=np.uint8), (1, 2, 0))


def dequantize_lab_np(q):
  q = np.asarray(q, np.float32)
  return np.concatenate([q[..., :1] / L_SCALE, q[..., 1:] - AB_OFFSET], axis=-1)


def embedding_np(raw):
  return np.frombuffer(raw, dtype=EMBEDDING_DTYPE).astype(np.float32)
