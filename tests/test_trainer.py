"""The trainer on real records from the Beam job: ab bins, losses, distribution, resumption, bad data, flags.

Records are small (64 x 64 canvases of scikit-image's photos) and the network narrow (--width), so every run
here takes seconds on two CPU cores; multi-worker and kill/resume run real `python -m trainer.task` processes.
"""
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app

from paths import REPO
from pipeline import cli, colour, schema
from trainer import (abbins, config, data, distribute, jobdir, losses, loop, model as model_lib, optimizers, runinfo,
                     task)

SIZE = 64
# Subprocesses split the CPU into two logical devices before TensorFlow starts, as conftest.py does here.
BOOT = """
import runpy, sys
from pipeline import quiet
tf = quiet.tensorflow()
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0], [tf.config.LogicalDeviceConfiguration()] * 2)
runpy.run_module('trainer.task', run_name='__main__', alter_sys=True)
"""


@pytest.fixture(scope='module')
def records(make_records):
  """The preprocessing job's output for scikit-image's 10 colour photos: 8 train (2 shards), 2 val."""
  return make_records('--image-size', str(SIZE), '--num-shards', '2', '--embedder', 'mobilenet_v2',
                      '--embedder-weights', 'random', '--runner', 'DirectRunner')


def _config(records, job_dir, **kw):
  defaults = dict(epochs=1, steps_per_epoch=2, batch_size=4, width=0.25, strategy='one_device', export=False,
                  val_images=2, sample_images=2, log_every=1)
  return config.Config(data=records, job_dir=str(job_dir), **dict(defaults, **kw))


def _scalars(log_dir, tag):
  """[(step, value)] of a scalar in a TensorBoard log directory, read from the event files."""
  found = []
  for path in tf.io.gfile.glob(f'{log_dir}/events.out.tfevents.*'):
    for raw in tf.data.TFRecordDataset(path).ignore_errors():   # a killed writer may leave half a record
      event = tf.compat.v1.Event.FromString(raw.numpy())
      found += [(event.step, float(tf.make_ndarray(v.tensor))) for v in event.summary.value if v.tag == tag]
  return sorted(found)


def _run_task(args, env=None, **kw):
  return subprocess.Popen([sys.executable, '-c', BOOT] + args, cwd=REPO, env=dict(os.environ, **(env or {})),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _cli(records, job_dir, *extra):
  return ['--data', records, '--job-dir', str(job_dir), '--batch-size', '4', '--width', '0.25', *extra]


# ---------------------------------------------------------------- ab bins and losses

def test_in_gamut_bins_are_the_cells_every_srgb_colour_falls_in():
  hit = np.zeros_like(abbins.in_gamut_grid())
  for red in range(0, 256, 32):   # the whole 8-bit cube, in slices
    v = np.arange(256, dtype=np.float32) / 255.0
    rgb = np.stack(np.meshgrid(np.arange(red, red + 32) / 255.0, v, v, indexing='ij'), -1).reshape(-1, 3)
    hit |= abbins._grid_hit(tf.constant(rgb, tf.float32))
  np.testing.assert_array_equal(abbins.in_gamut_grid(), hit)
  assert abbins.num_bins() == 261     # not Zhang et al.'s 313: see the abbins docstring
  # Pure red (Lab 53, 80, 67) is in the bin centred on (80, 70); ab = (0, 0) is a bin centre.
  red_ab = colour.rgb_to_lab(tf.constant([[1.0, 0.0, 0.0]]))[0, 1:].numpy()
  _, nearest = abbins.soft_encode(tf.constant([red_ab, [0.0, 0.0]]))
  np.testing.assert_array_equal(abbins.centres()[nearest.numpy()], [[80, 70], [0, 0]])


def test_rebalancing_weights_favour_rare_colours_and_average_one_under_the_prior():
  mask = abbins.in_gamut_grid()
  counts = np.zeros((23, 23), np.int64)
  counts[11, 11] = 10_000             # grey dominates, as in photos
  counts[11, 12] = 1_000
  counts[15, 18] = 10                 # a rare colour
  w = abbins.rebalance_weights_grid(counts)
  assert w.shape == (23, 23) and (w[~mask] == 0).all() and (w[mask] > 0).all()
  assert w[11, 11] < w[11, 12] < w[15, 18]
  # Expectation 1 under the smoothed prior the weights were made from: recompute the prior independently.
  import scipy.ndimage
  prior = scipy.ndimage.gaussian_filter(counts.astype(float), 0.5, mode='constant') * mask
  prior /= prior.sum()
  assert (prior * w).sum() == pytest.approx(1.0, rel=1e-5)
  # gamma = 0.5 bounds the ratio of weights: at most 1 + (1 - gamma) / gamma * Q * max(p).
  assert w[mask].max() / w[mask].min() <= 1 + mask.sum() * prior.max() + 1e-3
  uniform = abbins.rebalance_weights_grid(np.ones((23, 23)) * mask)
  assert np.ptp(uniform[mask]) < 0.5 and abbins.rebalance_weights_grid(np.zeros((23, 23)))[mask] == pytest.approx(1)


def test_soft_encoding_and_annealed_mean():
  ab = tf.constant([[3.0, -7.0], [42.0, 18.0], [-60.0, 57.0]])
  soft, nearest = abbins.soft_encode(ab)
  np.testing.assert_allclose(tf.reduce_sum(soft, -1), 1.0, rtol=1e-6)
  assert (tf.reduce_sum(tf.cast(soft > 0, tf.int32), -1).numpy() == abbins.NEIGHBOURS).all()
  np.testing.assert_array_equal(abbins.centres()[nearest.numpy()], [[0, -10], [40, 20], [-60, 60]])
  # The soft target's mean is close to the ab it encodes (within a bin).
  assert np.abs(tf.tensordot(soft, abbins.centres(), 1).numpy() - ab.numpy()).max() < 5.0
  # Annealed mean: T -> 0 gives the mode, T = 1 the mean; T = 0.38 lies between.
  logits = tf.math.log(tf.constant([0.6, 0.4]))[None] * 1.0
  two = np.zeros((1, abbins.num_bins()), np.float32) - 1e9
  i, j = nearest.numpy()[1], nearest.numpy()[2]
  two[0, i], two[0, j] = logits[0, 0], logits[0, 1]
  mode, mean = abbins.centres()[i], 0.6 * abbins.centres()[i] + 0.4 * abbins.centres()[j]
  np.testing.assert_allclose(abbins.annealed_mean(two, 1.0)[0], mean, atol=1e-3)
  np.testing.assert_allclose(abbins.annealed_mean(two, 0.01)[0], mode, atol=1e-3)
  annealed = abbins.annealed_mean(two)[0].numpy()
  assert np.linalg.norm(annealed - mode) < np.linalg.norm(mean - mode)


@pytest.mark.parametrize('loss', model_lib.LOSSES)
def test_losses_ignore_the_letterbox_padding(loss):
  rng = np.random.default_rng(0)
  box = tf.constant([[16, 0, 32, 64], [0, 20, 64, 23]], tf.int32)
  ab = tf.constant(rng.uniform(-60, 60, (2, SIZE, SIZE, 2)), tf.float32)
  model = model_lib.build('beta', loss, SIZE, width=0.25)
  outputs = model({'l': tf.zeros([2, SIZE, SIZE, 1])})
  fn = losses.make(loss, np.ones((23, 23)))
  inside = losses.content_mask(box, SIZE)
  assert inside.numpy()[0, :16].sum() == 0 and inside.numpy()[0, 16:48].all()
  noise = tf.constant(rng.uniform(-100, 100, ab.shape), tf.float32)
  a, b = fn(outputs, ab, box), fn(outputs, ab * inside + noise * (1 - inside), box)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  assert (a.numpy() > 0).all()
  if loss == 'mse':   # and equals the plain mean over the content pixels
    want = [np.mean((outputs[i].numpy() - ab[i].numpy() / model_lib.AB_SCALE)[t:t + h, l:l + w] ** 2)
            for i, (t, l, h, w) in enumerate(box.numpy())]
    np.testing.assert_allclose(a, want, rtol=1e-5)


# ---------------------------------------------------------------- training

def _fixed_batch(records, meta, n=4):
  """The input pipeline's batch (stored planes, no augmentation) of the first n training records by key (the
  shards' order varies between runs)."""
  raw = [r.numpy() for f in schema.list_shards(records, 'train') for r in tf.data.TFRecordDataset(f)]
  r = schema.parse_batch(tf.constant(raw), meta, decode_lab=False)
  first = np.argsort(r['key'].numpy())[:n]
  return {'planes': tf.gather(r['lab'], first), 'box': tf.gather(r['box'], first),
          'embedding': tf.gather(r['embedding'], first)}


def _sgd_weights_after_two_steps(records, meta, batch, strategy_name, sum_not_mean=False):
  """(losses, trainable weights before and after, BN statistics) of two plain-SGD steps on `batch`."""
  replicas = 2 if strategy_name == 'mirrored' else 1
  # fusion: a network trained from scratch end to end (the unet's random frozen trunk only adds rounding noise);
  # without hints, the network the 0.4 % below was measured on (test_hints.py trains hints on two replicas).
  cfg = _config(records, '/unused', batch_size=4 // replicas, optimizer='sgd', schedule='constant',
                learning_rate=0.05, model='fusion', hints=False)
  strategy = distribute.make_strategy(strategy_name)
  keras.utils.set_random_seed(7)
  trainer = loop.Trainer(cfg, meta, strategy, total_steps=2)
  assert trainer.global_batch == 4 and strategy.num_replicas_in_sync == replicas
  if sum_not_mean:   # the bug this test exists for: each replica's loss divided by its own batch, then summed
    trainer.global_batch = cfg.batch_size
  before = [v.numpy() for v in trainer.model.trainable_variables]
  iterator = trainer.distribute(tf.data.Dataset.from_tensors(batch).repeat())
  losses_ = [float(trainer.train_step(iterator)) for _ in range(2)]
  if replicas == 2:   # both replicas hold the same weights after the steps
    for v in trainer.model.trainable_variables:
      copies = [c.numpy() for c in v.value.values]
      np.testing.assert_array_equal(copies[0], copies[1])
  after = [v.numpy() for v in trainer.model.trainable_variables]
  return losses_, before, after, [v.numpy() for v in trainer.model.non_trainable_variables]


def test_one_step_on_two_mirrored_replicas_equals_one_step_on_one_device(records):
  """Gradients are all-reduced right: two replicas over a global batch of 4 take the same plain-SGD steps as one
  device over the same 4 images, and a sum instead of a mean (each replica's loss over its own half) does not."""
  meta = data.load_metadata(records)
  batch = _fixed_batch(records, meta)
  one = _sgd_weights_after_two_steps(records, meta, batch, 'one_device')
  two = _sgd_weights_after_two_steps(records, meta, batch, 'mirrored')
  wrong = _sgd_weights_after_two_steps(records, meta, batch, 'mirrored', sum_not_mean=True)
  for before_a, before_b in zip(one[1], two[1]):
    np.testing.assert_array_equal(before_a, before_b)
  flat = lambda run: np.concatenate([(a - b).ravel() for a, b in zip(run[2], run[1])])   # what SGD moved
  moved_one, moved_two, moved_wrong = flat(one), flat(two), flat(wrong)
  assert np.abs(moved_one).max() > 1e-3   # the steps really move the weights
  # SGD's update is proportional to the gradient: float rounding apart, the same updates. The rounding is not
  # only the all-reduce's: synchronised batch norm computes the variance as E[x^2] - E[x]^2 from all-reduced sums,
  # one device in two passes. Measured when this test was written: 0.4 % (relative L2) between the two runs.
  np.testing.assert_allclose(two[0], one[0], rtol=1e-4)
  relative = lambda moved: np.linalg.norm(moved - moved_one) / np.linalg.norm(moved_one)
  assert relative(moved_two) < 0.02
  # A sum-instead-of-mean all-reduce doubles the first step: 156 % when this test was written.
  assert relative(moved_wrong) > 0.5
  # Batch norm is synchronised: its statistics are the global batch's, not each replica's half.
  assert len(two[3]) >= 20
  for a, b in zip(two[3], one[3]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_float16_finiteness_is_decided_on_the_all_reduced_gradients(records):
  """An overflow on replica 1 only: both replicas skip the update and halve the loss scale (Keras' own check
  reads replica 0's gradients, finds them finite, and applies the infinite sum everywhere)."""
  meta = data.load_metadata(records)
  strategy = distribute.make_strategy('mirrored')
  trainer = loop.Trainer(_config(records, '/unused', batch_size=2, precision='mixed_float16'), meta, strategy,
                         total_steps=10)
  variables = trainer.model.trainable_variables
  before = [v.numpy() for v in variables]
  scale = float(trainer.optimizer.dynamic_scale.numpy())

  def grads(ctx):   # each replica's (loss, gradients)
    bad = ctx.replica_id_in_sync_group == 1
    return tf.constant(0.25), [tf.fill(v.shape, np.inf if bad and i == 0 else 1.0) for i, v in enumerate(variables)]

  apply = tf.function(lambda values: strategy.run(trainer.apply_gradients, args=values))
  loss, ok = apply(strategy.experimental_distribute_values_from_function(grads))
  assert [bool(v) for v in strategy.experimental_local_results(ok)] == [True, True]   # a finite loss: go on
  for v, b in zip(variables, before):
    for copy in v.value.values:
      np.testing.assert_array_equal(copy.numpy(), b)
  assert float(trainer.optimizer.dynamic_scale.numpy()) == scale / 2
  # The same call with finite gradients on both replicas updates every copy alike.
  apply(strategy.experimental_distribute_values_from_function(
      lambda ctx: (tf.constant(0.25), [tf.ones(v.shape) for v in variables])))
  moved = variables[0].value.values
  assert not np.array_equal(moved[0].numpy(), before[0])
  np.testing.assert_array_equal(moved[0].numpy(), moved[1].numpy())


def test_a_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(records, tmp_path):
  job = tmp_path / 'job'
  ckpts = job / 'checkpoints'
  good = dict(strategy='mirrored', batch_size=2, optimizer='sgd', steps_per_epoch=4, checkpoint_every=2,
              steps_per_loop=4, val_images=0)
  task.train(_config(records, job, **good))
  assert tf.train.latest_checkpoint(str(ckpts)).endswith('ckpt-4')
  # Resumed for a second epoch with an absurd learning rate: step 5 throws the weights to ~1e27, step 6 overflows.
  with pytest.raises(task.NonFiniteLoss, match=r'^step 6: the loss or the all-reduced gradients are not finite'):
    task.train(_config(records, job, **dict(good, epochs=2, learning_rate=1e30)))
  latest = tf.train.latest_checkpoint(str(ckpts))
  assert latest.endswith('ckpt-4')
  weights = [n for n, _ in tf.train.list_variables(latest) if '_trainable_variables/' in n]
  assert weights and all(np.isfinite(tf.train.load_variable(latest, n)).all() for n in weights)


def test_a_loop_of_k_steps_is_k_single_steps(records):
  """--steps-per-loop: one call runs K real steps (the same weights as K calls) and advances the step by K."""
  meta = data.load_metadata(records)
  batch = _fixed_batch(records, meta)
  weights = []
  for one_call in (False, True):
    keras.utils.set_random_seed(3)
    trainer = loop.Trainer(_config(records, '/unused', optimizer='sgd', schedule='constant'), meta,
                           tf.distribute.get_strategy(), total_steps=3)
    iterator = trainer.distribute(tf.data.Dataset.from_tensors(batch).repeat())
    if one_call:
      mean, done, finite = trainer.train_loop(iterator, tf.constant(3, tf.int64))
      assert int(done) == 3 and bool(finite) and np.isfinite(float(mean))
    else:
      for _ in range(3):
        trainer.train_step(iterator)
    assert int(trainer.step.numpy()) == 3
    weights.append(np.concatenate([v.numpy().ravel() for v in trainer.model.trainable_variables]))
  np.testing.assert_allclose(weights[1], weights[0], rtol=1e-5, atol=1e-6)


def test_fine_tuning_moves_the_encoder_only_from_its_step_and_never_its_batch_norm(records, tmp_path):
  """--fine-tune-from: the encoder's weights stay as loaded until the step (its learning rate is 0 before, ramped
  after), then train; its batch norm statistics never move; the decoder trains from the first step."""
  meta = data.load_metadata(records)
  batch = _fixed_batch(records, meta)
  cfg = _config(records, tmp_path, model='unet', fine_tune_from=2, encoder_lr_scale=0.5, hints=False)
  trainer = loop.Trainer(cfg, meta, tf.distribute.get_strategy(), total_steps=6)
  encoder = model_lib.encoder_of(trainer.model)
  assert encoder.trainable_variables and len(trainer._optimizers) == 2

  def snapshot():
    return ([v.numpy() for v in encoder.trainable_variables], [v.numpy() for v in encoder.non_trainable_variables],
            [v.numpy() for v in trainer.model.trainable_variables if all(v is not e for e in encoder.variables)])

  first = snapshot()
  assert any('moving_mean' in v.path for v in encoder.non_trainable_variables)
  iterator = trainer.distribute(tf.data.Dataset.from_tensors(batch).repeat())
  trainer.train_loop(iterator, tf.constant(3, tf.int64))   # optimizer steps 0, 1, 2: the rate is 0 up to 2
  third = snapshot()
  trainer.train_loop(iterator, tf.constant(2, tf.int64))
  fifth = snapshot()
  for a, b in zip(first[0], third[0]):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(third[0], fifth[0]))
  for a, b in zip(first[1], fifth[1]):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(first[2], third[2]))
  with pytest.raises(app.UsageError, match='--fine-tune-from'):
    config.check(_config(records, tmp_path, model='fusion', fine_tune_from=2))


def test_by_default_the_encoder_is_fine_tuned_from_a_fifth_of_the_run_and_a_resume_keeps_that_step(records, tmp_path):
  job = tmp_path / 'job'
  task.train(_config(records, job, steps_per_epoch=5, hints=False))   # the default model: unet
  run = runinfo.read(jobdir.paths(str(job)))
  # run.json records the whole config as resolved: the default's step made explicit.
  assert run['config'] == dataclasses.asdict(_config(records, job, steps_per_epoch=5, hints=False, fine_tune_from=1))
  ckpt = tf.train.latest_checkpoint(str(job / 'checkpoints'))
  assert any(n.startswith('encoder_optimizer/') for n, _ in tf.train.list_variables(ckpt))
  # Twice as long now (a fifth would be step 2), but the checkpoints were made with step 1: it stays.
  assert task.train(_config(records, job, epochs=2, steps_per_epoch=5, hints=False))['step'] == 10
  assert runinfo.read(jobdir.paths(str(job)))['config']['fine_tune_from'] == 1
  resolve = config.resolve_fine_tune
  assert resolve(_config(records, job, model='fusion'), 100).fine_tune_from == 0
  assert resolve(_config(records, job, precision='mixed_float16'), 100).fine_tune_from == 0
  assert resolve(_config(records, job, fine_tune_from=0), 100).fine_tune_from == 0
  assert resolve(_config(records, job), 100, previous_run={'config': {'fine_tune_from': 3}}).fine_tune_from == 3
  # A flat run.json (before the config was recorded whole) said None for a frozen encoder.
  assert resolve(_config(records, job), 100, previous_run=runinfo.upgrade({'fine_tune_from': None})).fine_tune_from == 0


def test_xla_step_matches_the_graph_step_and_refuses_cpu_replicas(records):
  meta = data.load_metadata(records)
  batch = _fixed_batch(records, meta)
  losses_ = {}
  for xla in (False, True):
    keras.utils.set_random_seed(5)
    # fusion: the unet's random frozen trunk turns XLA's different rounding into 1 % loss differences.
    trainer = loop.Trainer(_config(records, '/unused', xla=xla, model='fusion'), meta, tf.distribute.get_strategy(),
                           total_steps=3)
    iterator = trainer.distribute(tf.data.Dataset.from_tensors(batch).repeat())
    losses_[xla] = [float(trainer.train_step(iterator)) for _ in range(3)]
  np.testing.assert_allclose(losses_[True], losses_[False], rtol=1e-3)
  with pytest.raises(app.UsageError, match='--xla with 2 replicas needs every replica on a GPU'):
    loop.Trainer(_config(records, '/unused', xla=True), meta, distribute.make_strategy('mirrored'), total_steps=1)


def test_two_steps_under_mirrored_strategy_write_checkpoints_and_tensorboard(records, tmp_path):
  result = task.train(_config(records, tmp_path / 'job', strategy='mirrored', batch_size=2))
  assert result['step'] == 2 and np.isfinite(result['loss'])
  assert tf.train.latest_checkpoint(str(tmp_path / 'job' / 'checkpoints')).endswith('ckpt-2')
  assert [s for s, _ in _scalars(tmp_path / 'job' / 'logs' / 'train', 'loss')] == [1, 2]
  # The default cosine schedule over 2 steps (too few to warm up): 1e-3 -> 5e-4 after step 1 -> 0 after step 2.
  assert [v for _, v in _scalars(tmp_path / 'job' / 'logs' / 'train', 'learning_rate')] == pytest.approx([5e-4, 0])
  val = tmp_path / 'job' / 'logs' / 'val'
  for tag in ('loss', 'metrics/psnr', 'metrics/auc', 'metrics/auc_rebalanced', 'metrics/delta_cf'):
    assert len(_scalars(val, tag)) == 1, tag
  images = [v for path in tf.io.gfile.glob(f'{val}/events.*') for raw in tf.data.TFRecordDataset(path)
            for v in tf.compat.v1.Event.FromString(raw.numpy()).summary.value if v.tag == 'samples']
  # Two PNG montages (grey | predicted | truth), 3 canvases wide.
  pngs = tf.make_ndarray(images[0].tensor)
  assert pngs[:2].tolist() == [str(3 * SIZE).encode(), str(SIZE).encode()] and len(pngs) == 4


@pytest.mark.parametrize('box', [(8, 0, 16, 32), (0, 12, 32, 8), (0, 0, 32, 32)])
def test_zoom_keeps_the_content_box_on_the_content(box):
  """A grey content box on black bars, zoomed 64 times: inside the new box is content, outside is bar."""
  size, n = 32, 64
  t, l, h, w = box
  lab = np.zeros([n, size, size, 3], np.float32)
  lab[:, t:t + h, l:l + w] = [60.0, 20.0, -20.0]
  tf.random.set_seed(3)
  # Drawn by the input pipeline on the host, applied on the device.
  squares, boxes = data._zoom_squares(tf.constant([box] * n, tf.int32), size, 0.5)
  zoomed, boxes = data.augment_on_device(tf.constant(lab), squares=squares).numpy(), boxes.numpy()
  if h != w:   # random crops, not one (a square photo fills every crop: its box stays the canvas)
    assert len({tuple(b) for b in boxes}) > n // 2
  for image, (t2, l2, h2, w2) in zip(zoomed, boxes):
    assert max(h2, w2) >= size - 1 and t2 + h2 <= size and l2 + w2 <= size   # zoomed to fill the canvas again
    inside = np.zeros([size, size], bool)
    inside[t2:t2 + h2, l2:l2 + w2] = True
    core = np.zeros([size, size], bool)   # one pixel in from the edge, where interpolation may mix the two
    core[t2 + 1:t2 + h2 - 1, l2 + 1:l2 + w2 - 1] = True
    np.testing.assert_allclose(image[core], [[60.0, 20.0, -20.0]] * core.sum(), atol=1e-3)
    outside = ~inside
    outside[max(t2 - 1, 0):t2 + h2 + 1, max(l2 - 1, 0):l2 + w2 + 1] = False
    assert np.abs(image[outside]).max(initial=0) < 1e-3


def test_learning_rate_schedules(records):
  cosine = optimizers.learning_rate(_config(records, '/unused', learning_rate=0.01), total_steps=1000)
  values = [float(cosine(step)) for step in (0, 10, 20, 510, 1000)]
  # 2 % of the steps warm up linearly to the peak, then half a cosine down to 0 at the last step.
  assert values == pytest.approx([0, 0.005, 0.01, 0.005, 0], abs=1e-4)
  assert optimizers.learning_rate(_config(records, '/unused', schedule='constant'), total_steps=1000) == 1e-3


def test_the_encoders_delayed_schedule_is_rebuilt_from_its_config():
  """Keras rebuilds a schedule from get_config (as an optimizer's config holds it): the base schedule included."""
  cosine = optimizers.learning_rate(config.Config(learning_rate=0.01), total_steps=100)
  steps = [0, 19, 20, 24, 28, 60, 100]
  for base in (cosine, 0.01):
    schedule = optimizers.DelayedSchedule(base, start=20, ramp=8, scale=0.1)
    rebuilt = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(rebuilt) is optimizers.DelayedSchedule
    want = [float(schedule(step)) for step in steps]
    assert want[:3] == [0, 0, 0] and want[3] > 0
    assert [float(rebuilt(step)) for step in steps] == pytest.approx(want)


@pytest.mark.parametrize('model,loss', [(m, l) for m in model_lib.MODELS for l in model_lib.LOSSES])
def test_overfits_a_tiny_set(records, model, loss):
  meta = data.load_metadata(records)
  batch = _fixed_batch(records, meta)
  keras.utils.set_random_seed(1)
  cfg = _config(records, '/unused', model=model, loss=loss, batch_size=4, width=0.5)
  trainer = loop.Trainer(cfg, meta, tf.distribute.get_strategy(), total_steps=150)
  iterator = trainer.distribute(tf.data.Dataset.from_tensors(batch).repeat())
  values = [float(trainer.train_step(iterator)) for _ in range(150)]
  assert np.mean(values[-10:]) < 0.5 * values[0], values[::10]


@pytest.mark.parametrize('precision', ['mixed_float16', 'mixed_bfloat16'])
def test_mixed_precision_trains_and_keeps_float32_weights(records, tmp_path, precision):
  result = task.train(_config(records, tmp_path / 'job', precision=precision, steps_per_epoch=3, strategy='mirrored',
                              batch_size=2))
  assert result['step'] == 3 and np.isfinite(result['loss'])
  ckpt = tf.train.latest_checkpoint(str(tmp_path / 'job' / 'checkpoints'))
  weights = [n for n, _ in tf.train.list_variables(ckpt) if '_trainable_variables/' in n]
  assert len(weights) > 20 and all(tf.train.load_variable(ckpt, n).dtype == np.float32 for n in weights)
  assert keras.config.dtype_policy().name == 'float32'   # the global policy is left as it was


# ---------------------------------------------------------------- processes: multi-worker, kill and resume

def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def test_multi_worker_training_with_two_processes_on_loopback(records, tmp_path):
  workers = [f'127.0.0.1:{p}' for p in _free_ports(2)]
  procs = [_run_task(_cli(records, tmp_path / 'job', '--epochs', '2', '--steps-per-epoch', '3', '--noexport'),
                     env={'TF_CONFIG': json.dumps({'cluster': {'worker': workers},
                                                   'task': {'type': 'worker', 'index': i}})})
           for i in range(2)]
  outputs = [p.communicate(timeout=240)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out
    assert 'MultiWorkerMirroredStrategy with 2 replica(s), global batch 8' in out
  # The loss is all-reduced: both workers report the same one, so they trained one model together.
  final = [out.rsplit('Training finished at step ', 1)[1].splitlines()[0] for out in outputs]
  assert final[0] == final[1] and final[0].startswith('6 (loss ')
  ckpts = tmp_path / 'job' / 'checkpoints'
  assert tf.train.latest_checkpoint(str(ckpts)).endswith('ckpt-6')
  assert sorted(os.listdir(ckpts)) == sorted(['checkpoint', 'run.json'] + [
      f'ckpt-{s}.{ext}' for s in (3, 6) for ext in ('index', 'data-00000-of-00001')])


def test_sigkill_mid_run_then_the_same_command_resumes_and_finishes(records, tmp_path):
  ckpts = tmp_path / 'job' / 'checkpoints'
  args = _cli(records, tmp_path / 'job', '--strategy', 'mirrored', '--epochs', '3', '--steps-per-epoch', '12',
              '--checkpoint-every', '3', '--width', '1.0', '--log-every', '1', '--noexport')
  proc = _run_task(args)
  deadline = time.time() + 180
  while time.time() < deadline and proc.poll() is None:
    latest = tf.train.latest_checkpoint(str(ckpts))
    if latest and int(latest.rsplit('-', 1)[1]) >= 6:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  killed_out = proc.communicate()[0]
  assert proc.returncode == -signal.SIGKILL, killed_out
  saved = int(tf.train.latest_checkpoint(str(ckpts)).rsplit('-', 1)[1])
  assert 6 <= saved < 36, killed_out     # killed mid-run, after some checkpoints

  resumed = _run_task(args)
  out = resumed.communicate(timeout=240)[0]
  assert resumed.returncode == 0, out
  assert f'resumed from {ckpts}/ckpt-{saved} at step {saved}' in out
  assert 'Training finished at step 36' in out
  # Every step was trained once: the steps logged after the restart continue from the checkpoint.
  steps = [s for s, _ in _scalars(tmp_path / 'job' / 'logs' / 'train', 'loss')]
  assert set(range(saved + 1, 37)) <= set(steps) and max(steps) == 36


# ---------------------------------------------------------------- bad data

@pytest.fixture
def copy(records, tmp_path):
  shutil.copytree(records, tmp_path / 'data')
  return tmp_path / 'data'


def _metadata(path):
  return json.loads((path / schema.METADATA_FILE).read_text())


def _write_metadata(path, meta):
  (path / schema.METADATA_FILE).write_text(json.dumps(meta))


def test_unknown_schema_version_is_refused_on_the_command_line(copy, tmp_path):
  meta = _metadata(copy)
  _write_metadata(copy, dict(meta, schema_version=99))
  proc = _run_task(['--data', str(copy), '--job-dir', str(tmp_path / 'job')])
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode == 2
  assert f'error: {copy}/metadata.json: schema version 99' in out and 'Traceback' not in out


def test_mixed_embedders_are_refused(copy, tmp_path):
  meta = _metadata(copy)
  _write_metadata(copy, dict(meta, embedder=[meta['embedder'], dict(meta['embedder'], name='inception_resnet_v2')]))
  with pytest.raises(schema.SchemaError, match='mix embedders'):
    task.train(_config(str(copy), tmp_path / 'job'))
  # Shards of another run (here: with 3 shards) beside the listed ones.
  _write_metadata(copy, meta)
  shutil.copy(copy / 'train-00000-of-00002.tfrecord', copy / 'train-00000-of-00003.tfrecord')
  with pytest.raises(schema.SchemaError, match=f'{copy}/train-00000-of-00003.tfrecord is not listed'):
    task.train(_config(str(copy), tmp_path / 'job'))


def test_records_of_another_dataset_are_named(copy, tmp_path):
  # A shard whose records hold 8-d embeddings, in a directory whose metadata says 1000-d.
  lab = schema.encode_lab(np.zeros([SIZE, SIZE, 3], np.uint8))
  shard = copy / 'val-00000-of-00001.tfrecord'
  with tf.io.TFRecordWriter(str(shard)) as w:
    w.write(schema.serialize('x.jpg', -1, '', lab, [0, 0, SIZE, SIZE], [SIZE, SIZE], np.zeros(8)))
  with pytest.raises(schema.SchemaError, match=f'{shard} does not hold records of this dataset'):
    task.train(_config(str(copy), tmp_path / 'job'))


def test_a_corrupt_record_mid_shard_is_named(copy, tmp_path):
  shard = copy / 'train-00001-of-00002.tfrecord'
  raw = bytearray(shard.read_bytes())
  raw[len(raw) // 2:len(raw) // 2 + 64] = b'\xff' * 64     # past the first record, which the start-up check reads
  shard.write_bytes(bytes(raw))
  with pytest.raises(schema.SchemaError, match=f'{shard}: corrupt record'):
    task.train(_config(str(copy), tmp_path / 'job', steps_per_epoch=20))


def test_resuming_on_another_replica_count_keeps_the_global_batch_or_refuses(records, tmp_path):
  job = tmp_path / 'job'
  args = dict(steps_per_epoch=2, schedule='cosine', val_images=0)
  task.train(_config(records, job, strategy='mirrored', batch_size=2, **args))     # 2 replicas x 2
  with pytest.raises(jobdir.RunError, match=r'global batch of 4 \(2 replica\(s\) x 2\); this run has 1 replica\(s\) '
                     r'x --batch-size 2 = 2, .* Pass --batch-size 4 to continue'):
    task.train(_config(records, job, strategy='one_device', batch_size=2, **dict(args, epochs=2)))
  result = task.train(_config(records, job, strategy='one_device', batch_size=4, **dict(args, epochs=2)))
  assert result['step'] == 4
  # The optimizer's restored step carries the schedule on: steps 3 and 4 of a cosine over the 2 x 2 steps.
  lr = optimizers.learning_rate(_config(records, job, **dict(args, epochs=2)), total_steps=4)
  logged = _scalars(job / 'logs' / 'train', 'learning_rate')
  assert [s for s, _ in logged] == [1, 2, 3, 4]
  assert [v for _, v in logged[2:]] == pytest.approx([float(lr(3)), float(lr(4))], abs=1e-7)


def test_a_job_dir_of_another_model_is_refused(records, tmp_path):
  task.train(_config(records, tmp_path / 'job', steps_per_epoch=1))
  with pytest.raises(jobdir.RunError, match=r'run.json: the checkpoints .* are of another model \(model:'):
    task.train(_config(records, tmp_path / 'job', model='beta', steps_per_epoch=1))


def test_vertex_ai_directories_are_honoured(monkeypatch):
  assert jobdir.paths('gs://b/job/') == jobdir.Paths('gs://b/job/checkpoints', 'gs://b/job/logs', 'gs://b/job/export',
                                                     export_direct=False)
  monkeypatch.setenv('AIP_CHECKPOINT_DIR', 'gs://b/aip/checkpoints')
  monkeypatch.setenv('AIP_TENSORBOARD_LOG_DIR', 'gs://b/aip/logs')
  monkeypatch.setenv('AIP_MODEL_DIR', 'gs://b/aip/model/')
  assert jobdir.paths('gs://b/job') == jobdir.Paths('gs://b/aip/checkpoints', 'gs://b/aip/logs', 'gs://b/aip/model',
                                                    export_direct=True)


# ---------------------------------------------------------------- the configuration

# trainer.task's flags as they were defined by hand, before trainer.config.Config generated them, and those added
# since (--strength).
FLAGS_BEFORE = {'strength',
    'data', 'job-dir', 'epochs', 'steps-per-epoch', 'batch-size', 'model', 'encoder', 'encoder-weights',
    'output-stride', 'loss', 'precision', 'strategy', 'width', 'learning-rate', 'schedule', 'checkpoint-every',
    'log-every', 'val-images', 'sample-images', 'shuffle-buffer', 'rebalance-mix', 'zoom', 'temperature', 'cache',
    'seed', 'export', 'steps-per-loop', 'xla', 'optimizer', 'hints', 'fine-tune-from', 'encoder-lr-scale'}


def test_every_config_field_is_a_flag_of_trainer_task_and_parses_back():
  names = [name for _, name, _ in cli.flag_fields(config.Config)]
  assert len(names) == len(dataclasses.fields(config.Config)) and set(names) == FLAGS_BEFORE
  cfg = config.Config(data='d', job_dir='j', model='fusion', encoder='mobilenet_v2', output_stride=2, zoom=0.8,
                      hints=False, fine_tune_from=0, learning_rate=0.01)
  assert cli.parse(config.Config, ['prog'] + cli.as_flags(cfg))[0] == cfg
  assert cli.parse(config.Config, ['prog'])[0] == config.Config()
  assert config.shaping_fields() == ['model', 'output_stride', 'loss', 'width', 'hints', 'fine_tune_from']


def test_a_config_made_in_code_is_refused_where_its_flags_would_be():
  for kw, flag in ((dict(optimizer='rmsprop'), '--optimizer'), (dict(zoom=2.0), '--zoom'),
                   (dict(output_stride=3), '--output-stride'), (dict(encoder='vgg'), '--encoder'),
                   (dict(epochs=0), '--epochs'), (dict(model='beta', fine_tune_from=5), '--fine-tune-from')):
    with pytest.raises(app.UsageError, match=flag):
      config.check(config.Config(data='d', job_dir='j', **kw))
  config.check(config.Config(data='d', job_dir='j'))


def test_help_lists_every_flag():
  out = subprocess.run([sys.executable, '-m', 'trainer.task', '--help'], cwd=REPO, capture_output=True, text=True,
                       timeout=120).stdout
  assert set(re.findall(r'^  --(?:\[no\])?([\w-]+):', out, re.M)) == FLAGS_BEFORE, out
