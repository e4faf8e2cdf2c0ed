"""Where each record goes: its work unit, and from the unit its shard. Pure functions of keys and flags.

A work unit is the grain of the job (pipeline/units.py): its inputs are prepared and embedded in fixed batches,
its records written as one piece file per split, and it is committed (a summary file) only once every input is a
record or a failure. A shard is the concatenation of its units' pieces in unit order: train shard k holds the
train records of units k, k + S, k + 2S, ... (S = --num-shards), val shard j those of units j, j + V, ... Each
piece is sorted by key. So a shard's bytes depend on the inputs and the flags alone, never on the runner, the
number of workers, the order of a listing or a kill and resume.

Files: the unit is a hash of the key relative to its input root (so a tree splits the same way on a local disk
and in a bucket), over a number of units chosen from the number of inputs (about --unit-size each). TFDS: a
unit is a slice of one of the dataset's own files (already shuffled when TFDS prepared it), read in file order.
"""
import hashlib
import math

SHARD_TEMPLATE = '{split}-{shard:05d}-of-{shards:05d}.tfrecord'  # Beam's -SSSSS-of-NNNNN, as before


def _hash64(relative_key, salt):
  # Bytes 8-16 of the SHA-256: independent of the split's hash (sources.split_of uses bytes 0-8). A local file
  # name that is not UTF-8 is listed with its bytes as surrogates (os.fsdecode): hashed as those bytes, where
  # strict UTF-8 would raise (valid names hash as before).
  digest = hashlib.sha256(relative_key.encode('utf-8', 'surrogateescape')).digest()
  return int.from_bytes(digest[8 * salt:8 * salt + 8], 'big')


def num_units(num_inputs, num_shards, unit_size):
  """Units for file inputs: a multiple of the train shards (equal shards), each of about `unit_size` inputs."""
  return num_shards * max(1, math.ceil(num_inputs / (num_shards * unit_size)))


def unit_of(relative_key, units):
  return _hash64(relative_key, 1) % units


def shard_of(unit, shards):
  return unit % shards


def shard_name(split, shard, shards):
  return SHARD_TEMPLATE.format(split=split, shard=shard, shards=shards)


def units_of_shard(shard, shards, units):
  """The units whose pieces make up a shard, in the order they are concatenated."""
  return [u for u in sorted(units) if shard_of(u, shards) == shard]


def tfds_slices(file_instructions, unit_size):
  """TFDS file instructions -> [(filename, skip, take)], each at most unit_size examples, in the dataset's order.

  TFRecord files cannot seek to an example, so a slice's reader skips the examples before it (reading them):
  at most one TFDS file's bytes per slice, the price of units smaller than TFDS's own files.
  """
  slices = []
  for fi in file_instructions:
    for start in range(0, fi.take, unit_size):
      slices.append((fi.filename, fi.skip + start, min(unit_size, fi.take - start)))
  return slices


def key_hash(relative_key):
  """A third independent 64-bit hash: the listing's digest (job._Digest) sums these, in any order."""
  return _hash64(relative_key, 2)
