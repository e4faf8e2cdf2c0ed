"""Test-wide set-up: quiet TensorFlow, and two logical CPU devices so multi-replica code runs for real.

The logical devices must be configured before TensorFlow initialises its runtime, hence here.
"""
import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest
import tensorflow as tf

_cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPO.parent / 'shared'
SHARED_IMAGENET = SHARED / 'data' / 'imagenet-sample'
SHARED_WEIGHTS = SHARED / 'weights'
MOBILENET_WEIGHTS = SHARED_WEIGHTS / 'mobilenet_v2_1.0_224_imagenet.weights.h5'


@pytest.fixture
def shared_imagenet():
  if not SHARED_IMAGENET.is_dir():
    pytest.skip(f'{SHARED_IMAGENET} is absent')
  return SHARED_IMAGENET


@pytest.fixture
def mobilenet_weights():
  if not MOBILENET_WEIGHTS.is_file():
    pytest.skip(f'{MOBILENET_WEIGHTS} is absent')
  return MOBILENET_WEIGHTS


@pytest.fixture(autouse=True)
def _own_collective_keys():
  """Give each test's MirroredStrategy objects group keys of their own.

  Every MirroredStrategy starts its collective group keys at 1 + MirroredStrategy._collective_key_base, and the
  runtime caches collectives per process by (group, instance) key: two strategies running different models in one
  test process then meet at the same keys with other shapes ("Shape mismatch in the collective instance 100").
  A training process has one strategy; the test process has many, so each test moves the base (as TF's own
  tests do).
  """
  tf.distribute.MirroredStrategy._collective_key_base += 100_000
  yield
