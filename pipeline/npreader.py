"""Read the records without TensorFlow: numpy arrays for PyTorch data loaders and quick inspection.

Uses the `tfrecord` package's Example proto and fsspec for files (local or gs://). Never import this module in a
process that imports TensorFlow: the two register the same protobuf symbols and the import fails.
"""
import posixpath
import struct

import fsspec
import numpy as np
from tfrecord import example_pb2

from pipeline import schema


def shards(data_dir, split):
  fs, root = fsspec.core.url_to_fs(data_dir)
  found = sorted(fs.glob(posixpath.join(root, posixpath.basename(schema.shard_glob(data_dir, split)))))
  prefix = data_dir[:data_dir.index('://') + 3] if '://' in data_dir else ''
  return [prefix + f if prefix and not f.startswith(prefix) else f for f in found]


def _frames(path):
  """The payloads of a TFRecord file: u64 length, u32 masked crc, data, u32 masked crc."""
  with fsspec.open(path, 'rb') as f:
    while True:
      header = f.read(12)
      if not header:
        return
      if len(header) < 12:
        raise ValueError(f'{path}: truncated record header')
      (length,) = struct.unpack('<Q', header[:8])
      data = f.read(length)
      if len(data) < length or len(f.read(4)) < 4:
        raise ValueError(f'{path}: truncated record')
      yield data


def decode(serialized, image_size):
  """One record's bytes -> dict of numpy values (lab is float32 Lab [S, S, 3], S = metadata's image_size)."""
  feats = example_pb2.Example.FromString(serialized).features.feature
  stored = feats['lab'].bytes_list.value[0]
  return {
      'key': feats['key'].bytes_list.value[0].decode(),
      'label': int(feats['label'].int64_list.value[0]),
      'synset': feats['synset'].bytes_list.value[0].decode(),
      'lab': schema.dequantize_lab_np(schema.decode_lab_np(stored, image_size)),
      'box': np.array(feats['box'].int64_list.value, np.int64),
      'size': np.array(feats['size'].int64_list.value, np.int64),
      'embedding': schema.embedding_np(feats['embedding'].bytes_list.value[0]),
      'record_bytes': len(serialized),
  }


def records(data_dir, split):
  """Iterate the decoded records of a split (for PyTorch: wrap in an IterableDataset).

  The metadata is read (and its schema version checked) first: records of another version raise SchemaError
  saying how to regenerate them.
  """
  size = schema.read_metadata(data_dir)['image_size']
  for path in shards(data_dir, split):
    for serialized in _frames(path):
      yield decode(serialized, size)
