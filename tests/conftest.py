"""Test-wide set-up: quiet TensorFlow, two logical CPU devices so multi-replica code runs for real, the records
factory, the shared data, and the markers `slow` and `shared`.

The logical devices must be configured before TensorFlow initialises its runtime, hence here. Test files import
paths (the repository, ../shared) and made_records, never this file.
"""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest
import tensorflow as tf

import made_records
from paths import MOBILENET_WEIGHTS, SHARED_IMAGENET

_cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

# Tests that take over ~30 s on this project's 2 CPU cores (pytest --durations), by file. Listed here, where
# `-m "not slow"` finds them all; a name that no longer matches a test of its file stops the collection.
SLOW = {
}
# Fixtures of the data beside the repository (../shared): a test that asks for one is marked `shared`.
SHARED_FIXTURES = ('shared_imagenet', 'mobilenet_weights')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: takes over ~30 s on 2 CPU cores; -m "not slow" leaves these out')
  config.addinivalue_line('markers', 'shared: needs ../shared beside the repository (ImageNet sample, weights); '
                                     'skipped without it, failed without it under CI=true')


@pytest.hookimpl(tryfirst=True)   # before -m selects by these markers
def pytest_collection_modifyitems(config, items):
  found = {}
  for item in items:
    file, name = item.path.name, item.originalname
    found.setdefault(file, set()).add(name)
    if name in SLOW.get(file, ()):
      item.add_marker(pytest.mark.slow)
    if any(f in item.fixturenames for f in SHARED_FIXTURES):
      item.add_marker(pytest.mark.shared)
  stale = [f'{file}::{name}' for file, names in SLOW.items() if file in found for name in names
           if name not in found[file]]
  if stale:
    raise pytest.UsageError(f'tests/conftest.py SLOW names tests that are not there: {", ".join(stale)}; '
                            'rename or remove them in SLOW')


def _shared(path, present):
  """path when present; else the test skips, or fails under CI=true (CI must run it: ../shared is beside it)."""
  if present:
    return path
  if os.environ.get('CI', '').lower() == 'true':
    pytest.fail(f'{path} is absent: under CI=true the tests marked shared must run; put ../shared beside the '
                'repository', pytrace=False)
  pytest.skip(f'{path} is absent')


@pytest.fixture
def shared_imagenet():
  return _shared(SHARED_IMAGENET, SHARED_IMAGENET.is_dir())


@pytest.fixture
def mobilenet_weights():
  return _shared(MOBILENET_WEIGHTS, MOBILENET_WEIGHTS.is_file())


@pytest.fixture(scope='session')
def make_records():
  """make_records(*flags) -> the records directory of the Beam job with these flags, made once per session."""
  return made_records.shared()


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
