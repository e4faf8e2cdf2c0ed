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

# Tests that took over ~30 s of their own (not a shared fixture's first build) under pytest --durations on this
# project's 2 CPU cores, beside other work (load average 7-12). Listed here by file, one list for -m "not slow";
# a name that no longer matches a test of its file stops the collection.
SLOW = {
    'test_export.py': ('test_export_command_honours_aip_model_dir',
                       'test_reloaded_in_a_fresh_process_it_matches_the_trainer_and_colours_photos_at_their_size',
                       'test_a_job_dir_with_a_flat_run_json_of_before_still_exports_and_resumes'),
    'test_hints.py': ('test_the_export_spreads_a_hint_over_the_surface_it_is_on',
                      'test_trains_with_hints_on_two_replicas_in_float16_and_resumes_only_with_them'),
    'test_preprocess.py': ('test_cli_prints_a_clean_summary_and_fails_when_nothing_is_written',),
    'test_quality.py': ('test_the_study_trains_evaluates_and_reports',),
    'test_resume.py': ('test_sigkill_then_same_command_gives_the_clean_output',),
    'test_trainer.py': (
        'test_sigkill_mid_run_then_the_same_command_resumes_and_finishes',
        'test_multi_worker_training_with_two_processes_on_loopback',
        'test_by_default_the_encoder_is_fine_tuned_from_a_fifth_of_the_run_and_a_resume_keeps_that_step',
        'test_a_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint',
        'test_resuming_on_another_replica_count_keeps_the_global_batch_or_refuses',
        'test_overfits_a_tiny_set',
        'test_two_steps_under_mirrored_strategy_write_checkpoints_and_tensorboard',
        'test_mixed_precision_trains_and_keeps_float32_weights',
        'test_one_step_on_two_mirrored_replicas_equals_one_step_on_one_device',
    ),
    'test_unchanged.py': ('test_export_outputs_are_unchanged',),
}
# Fixtures of the data beside the repository (../shared): a test that asks for one is marked `shared`.
SHARED_FIXTURES = ('shared_imagenet', 'mobilenet_weights')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: takes over ~30 s on 2 CPU cores; -m "not slow" leaves these out')
  config.addinivalue_line('markers', 'shared: needs ../shared beside the repository (ImageNet sample, weights); '
                                     'skipped without it, failed without it under CI=true')


@pytest.hookimpl(tryfirst=True)   # before -m selects by these markers
def pytest_collection_modifyitems(config, items):
  modules = {}
  for item in items:
    file, name = item.path.name, item.originalname
    modules[file] = item.module
    if name in SLOW.get(file, ()):
      item.add_marker(pytest.mark.slow)
    if any(f in item.fixturenames for f in SHARED_FIXTURES):
      item.add_marker(pytest.mark.shared)
  stale = [f'{file}::{name}' for file, names in SLOW.items() if file in modules for name in names
           if not callable(getattr(modules[file], name, None))]
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
