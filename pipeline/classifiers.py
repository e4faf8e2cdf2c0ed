"""The ImageNet classifiers an embedder can be, as data: their Keras application, input size and trunk layers;
and what metadata.json records of one. TensorFlow-free, so that the job's configuration (pipeline/config.py) can
name the choices without importing it; the models themselves are built in pipeline/embedder.py.
"""
import dataclasses
import hashlib

import numpy as np

from pipeline import schema


@dataclasses.dataclass(frozen=True)
class Spec:
  application: str
  module: str
  input_size: int
  dim: int = 1000
  # The trunk's layers at strides 2, 4, 8, 16 and 32 of its input (a name, or an index where Keras numbers the
  # name per process): the last layer of each stage, where its features are richest.
  pyramid: tuple = ()


SPECS = {
    # 'valid' padding: its stages are a few pixels short of the strides (pyramid() resizes them).
    'inception_resnet_v2': Spec('InceptionResNetV2', 'inception_resnet_v2', 299,
                                pyramid=(3, 16, 'block35_10_ac', 'block17_20_ac', 'conv_7b_ac')),
    'mobilenet_v2': Spec('MobileNetV2', 'mobilenet_v2', 224, pyramid=(
        'block_1_expand_relu', 'block_3_expand_relu', 'block_6_expand_relu', 'block_13_expand_relu', 'out_relu')),
}
PRECISIONS = {'float32': 'float32', 'bfloat16': 'mixed_bfloat16'}


def sha256(path):
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def describe(name, weights, precision):
  """What metadata.json records of the embedder, so later stages rebuild (or refuse) the same one."""
  spec = SPECS[name]
  info = {'name': name, 'weights': weights, 'precision': precision, 'dim': spec.dim,
          'dtype': np.dtype(schema.EMBEDDING_DTYPE).name, 'input_size': spec.input_size}
  if weights not in ('random', 'imagenet') and '://' not in weights:
    info['weights_sha256'] = sha256(weights)
  return info
