"""The preprocessing job's configuration: one field per flag of `python -m pipeline.preprocess` (pipeline.cli), and
what follows from it: the command a resumed run must match, and the description metadata.json gives of the records.

A field made with output_bytes=True decides the bytes of the output; command() is those fields, so that a flag
added with it cannot be forgotten by the resume check. Beam's own options (the runner, workers) are no fields:
they do not change a byte, so a job started on one runner may be finished on another. A module of its own, not
pipeline/preprocess.py (which runs as __main__: what is pickled for the workers must unpickle by module name), and
TensorFlow-free: pipeline/job.py imports it, and every worker imports job.py, where TensorFlow must come in only
through pipeline.quiet.
"""
import dataclasses
from typing import Optional

from absl import app

from pipeline import classifiers, cli, decode, resume, schema, sources

OUTPUT_BYTES = 'output_bytes'   # field metadata: True, or 'fingerprint' (a long value: its digest stands for it)


def bytes_flag(default, help, **kw):  # noqa: A002
  """A flag that decides the output's bytes (command() holds it); serving/batch.py's config uses it too."""
  return cli.flag(default, help, **{OUTPUT_BYTES: True}, **kw)


_bytes = bytes_flag


@dataclasses.dataclass
class Config:
  inputs: list = _bytes([], 'Folder (recursive), glob, file or gs:// prefix; repeatable. Default: the colour '
                        'sample photos shipped with scikit-image.', name='input')
  tfds: Optional[str] = _bytes(None, 'Read a TFDS image dataset by name instead (e.g. imagenet2012).')
  tfds_split: str = _bytes('train', 'TFDS split to read (e.g. train, validation, train[:1%]).')
  tfds_data_dir: Optional[str] = cli.flag(None, 'TFDS data_dir (where prepared datasets live).')
  tfds_manual_dir: Optional[str] = cli.flag(None, 'Prepare the TFDS dataset from this manual_dir first '
                                            '(imagenet2012: the folder holding ILSVRC2012_img_train.tar and '
                                            'ILSVRC2012_img_val.tar).')
  output: Optional[str] = cli.flag(None, 'Output directory (local or gs://).')
  embedder: str = _bytes('inception_resnet_v2', 'Frozen ImageNet classifier.', choices=tuple(classifiers.SPECS))
  embedder_weights: str = _bytes('imagenet', "'imagenet' (Keras download), 'random' (tests only) or the path "
                                 '(local or gs://) of a Keras weights file for the full 1000-class model.')
  embedder_precision: str = _bytes('float32', 'Embedder compute precision.', choices=tuple(classifiers.PRECISIONS))
  embedder_batch_size: int = _bytes(32, 'Largest batch RunInference gives the embedder.')
  image_size: int = _bytes(256, 'Side of the square letterbox canvas.')
  val_fraction: float = _bytes(0.1, 'Fraction of inputs (by key hash) in the val split.',
                               validator=(lambda v: 0.0 <= v < 1.0, '--val-fraction must be in [0, 1)'))
  num_shards: int = _bytes(8, 'Train shards (val gets the same share of shards as of records, >= 1).', lower=1)
  max_pixels: int = _bytes(decode.BOMB_GUARD_PIXELS, 'Reject images with more pixels (bomb guard).')
  unit_size: int = _bytes(256, 'Inputs per work unit: the grain that a killed job redoes (at most one unit per '
                          'worker in progress) and that a worker holds in memory.', lower=1)
  # Val shards: the same share of shards as of records, at least one.
  val_shards: int = dataclasses.field(init=False, metadata={OUTPUT_BYTES: True})
  # TFDS: the split's files cut into slices of at most unit_size examples, which are the work units. Fixed when
  # the graph is built (job.tfds_slices), so the command holds them once known.
  tfds_slices: Optional[list] = dataclasses.field(default=None, metadata={OUTPUT_BYTES: 'fingerprint'})

  def __post_init__(self):
    self.val_shards = max(1, round(self.num_shards * self.val_fraction / (1.0 - self.val_fraction)))


def resolve(cfg):
  """The config a job runs: its values checked as its flags check them (a config may be made in code), --output
  given (without a trailing slash), the sample photos when nothing else is read."""
  cli.validate(cfg)
  if not cfg.output:
    raise app.UsageError('--output DIR is required (local folder or gs://bucket/path)')
  inputs = cfg.inputs or ([] if cfg.tfds else sources.sample_photos())
  return dataclasses.replace(cfg, inputs=list(inputs), output=cfg.output.rstrip('/'))


def command(cfg):
  """What decides the output's bytes (the fields marked so); a resumed run must match it (pipeline/resume.py)."""
  out = {}
  for f in dataclasses.fields(cfg):
    value, kind = getattr(cfg, f.name), f.metadata.get(OUTPUT_BYTES)
    if kind == 'fingerprint':
      if value is not None:
        out[f.name] = resume.fingerprint(value)
    elif kind:
      out[f.name] = value
  return out


def metadata(cfg):
  """What metadata.json says of the records besides their counts: canvas, embedder, record layout, inputs."""
  return {
      'image_size': cfg.image_size,
      'embedder': classifiers.describe(cfg.embedder, cfg.embedder_weights, cfg.embedder_precision),
      'record': {'format': 'tfrecord', 'features': list(schema.FEATURES),
                 'lab': schema.LAB_ENCODING, 'embedding': f'{schema.EMBEDDING_DTYPE} bytes',
                 'box': 'top, left, height, width', 'size': 'source height, width'},
      'inputs': [f'tfds:{cfg.tfds}/{cfg.tfds_split}'] if cfg.tfds else cfg.inputs,
      'val_fraction': cfg.val_fraction,
  }
