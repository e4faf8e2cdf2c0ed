r"""Train the colorizer on the preprocessing job's records; export a SavedModel at the end.

  python -m trainer.task --data DIR --job-dir DIR [--epochs N] [--steps-per-epoch N] [--batch-size N]
      [--model unet|fusion|beta] [--encoder NAME] [--encoder-weights W] [--loss classification|mse]
      [--precision float32|mixed_float16|mixed_bfloat16] [--strategy auto|mirrored|multi_worker|one_device]
      [--schedule cosine|constant] [--zoom 0.5] [--rebalance-mix 0.5] [--nohints] [--steps-per-loop 10] [--xla]
      [--optimizer adam|sgd]

One custom training loop (`strategy.run`) for every strategy: Keras 3's `fit` fails under
MultiWorkerMirroredStrategy (keras-team/keras#20585). `auto` is MultiWorkerMirroredStrategy when TF_CONFIG names
several workers, MirroredStrategy over every GPU of the host, else one device. Killed at any moment and started
again with the same command, the run resumes from its last checkpoint (every --checkpoint-every steps and at
each epoch end). Vertex AI's AIP_CHECKPOINT_DIR, AIP_TENSORBOARD_LOG_DIR and AIP_MODEL_DIR are honoured.

Like TF Model Garden's Orbit, one tf.function call runs up to --steps-per-loop steps (a tf.range loop around
strategy.run) and the host looks at the results only between calls: a loop ends after K steps, at a multiple of
--log-every or --checkpoint-every, or at the epoch end, whichever comes first. A step whose loss or all-reduced
gradients are not finite ends the loop; training stops with an error naming the step, before any checkpoint.
"""
from pipeline import quiet

tf = quiet.tensorflow()  # before anything else imports it, so its start-up notices stay off the terminal

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Optional

import keras
import numpy as np
import tqdm
from absl import app, flags, logging

from pipeline import colour, embedder, schema
from trainer import abbins, console, data, export, jobdir, losses, metrics, model as model_lib

STRATEGIES = ('auto', 'mirrored', 'multi_worker', 'one_device')
PRECISIONS = ('float32', 'mixed_float16', 'mixed_bfloat16')
OPTIMIZERS = ('adam', 'sgd')
SCHEDULES = ('constant', 'cosine')
WARMUP = 0.02   # share of the steps spent warming up with --schedule cosine


@dataclasses.dataclass
class Config:
  data: str
  job_dir: str
  epochs: int = 10
  steps_per_epoch: int = 0       # 0: one pass over the training records per epoch
  batch_size: int = 16           # per replica; the global batch is this times the number of replicas
  model: str = 'unet'            # blue skies and green grass where fusion gives sepia (BENCHMARKS.md, Quality)
  encoder: str = ''              # unet: the classifier of its encoder; '': the records' embedder
  encoder_weights: str = ''      # unet: imagenet, random or a weights file; '': the records' embedder's
  output_stride: int = 4         # unet: its classification logits (or mse features) at S/4, or S/2
  loss: str = 'classification'   # more colour than mse and a smaller dCF (BENCHMARKS.md, Quality)
  precision: str = 'float32'
  strategy: str = 'auto'
  width: float = 1.0
  learning_rate: float = 1e-3
  schedule: str = 'cosine'       # cosine: linear warm-up, then cosine decay to 0 at the last step
  checkpoint_every: int = 200
  log_every: int = 10
  val_images: int = 64
  sample_images: int = 4
  shuffle_buffer: int = 1024
  # Classification class weights 1 / ((1 - mix) p + mix / Q), Zhang's 0.5: with it the unet's colourfulness already
  # matches the truth's (BENCHMARKS.md, Quality); fusion's study preferred 0.25, which brought it from 56 to 71 %.
  rebalance_mix: float = 0.5
  zoom: float = 0.5              # < 1: zoom into random squares of side zoom..1 of the content (augmentation)
  temperature: float = abbins.TEMPERATURE   # classification: the annealed mean's (validation and the export)
  cache: bool = False
  seed: int = 0
  export: bool = True
  steps_per_loop: int = 10       # train steps per tf.function call (Orbit's steps_per_loop); the host syncs between
  xla: bool = False              # compile each replica's forward and backward pass with XLA (jit_compile)
  optimizer: str = 'adam'        # sgd: plain gradient descent (scale-sensitive; the all-reduce test uses it)
  # Simulated hint points (trainer/hints.py), so users can steer colours: on, as with no hint the result measured
  # no worse than the same recipe trained without them (BENCHMARKS.md, Hints)
  hints: bool = True
  # unet: from this step on the encoder trains too, at encoder_lr_scale x the learning rate (ramped up over a
  # tenth of the remaining steps), its batch norm kept in inference mode; 0: frozen throughout. None: a fifth of
  # the run (FINE_TUNE_AFTER), +0.25 dB PSNR over the frozen encoder on average (BENCHMARKS.md, Quality).
  fine_tune_from: Optional[int] = None
  encoder_lr_scale: float = 0.1


flags.DEFINE_string('data', None, 'Records directory written by python -m pipeline.preprocess (local or gs://).')
flags.DEFINE_string('job-dir', None, 'Checkpoints, TensorBoard logs and exports go here (local or gs://).')
flags.DEFINE_integer('epochs', Config.epochs, 'Epochs to train.')
flags.DEFINE_integer('steps-per-epoch', Config.steps_per_epoch, 'Steps per epoch; 0: one pass over the data.')
flags.DEFINE_integer('batch-size', Config.batch_size, 'Batch size per replica.')
flags.DEFINE_enum('model', Config.model, model_lib.MODELS, 'unet (a frozen ImageNet classifier as the encoder, '
                  'with the embedding), fusion (Deep Koalarization, with the embedding) or beta (without).')
flags.DEFINE_enum('encoder', Config.encoder or None, list(embedder.SPECS), 'unet: the classifier whose trunk '
                  'is the encoder (default: the embedder the records were made with).')
flags.DEFINE_integer('output-stride', Config.output_stride, 'unet: predict ab at 1/4 of the canvas (as Zhang et '
                     'al.), or at 1/2 (one more decoder level, from the encoder\'s first stage).')
flags.register_validator('output-stride', lambda v: v in (2, 4), message='--output-stride must be 2 or 4')
flags.DEFINE_string('encoder-weights', Config.encoder_weights or None, 'unet: the encoder\'s weights, imagenet, '
                    'random or a Keras weights file of the full classifier (default: the records\' embedder\'s, '
                    'checked against its sha256 in metadata.json).')
flags.DEFINE_enum('loss', Config.loss, model_lib.LOSSES, 'mse on ab, or classification over ab bins.')
flags.DEFINE_enum('precision', Config.precision, PRECISIONS, 'Keras dtype policy of the colorizer.')
flags.DEFINE_enum('strategy', Config.strategy, STRATEGIES, 'tf.distribute strategy.')
flags.DEFINE_float('width', Config.width, 'Multiplier of every layer\'s filter count (1.0: the paper\'s).')
flags.DEFINE_float('learning-rate', Config.learning_rate, 'Adam learning rate (the peak, with --schedule cosine).')
flags.DEFINE_enum('schedule', Config.schedule, SCHEDULES, 'Learning rate schedule over epochs x steps: constant, '
                  'or cosine (linear warm-up over the first 2 %, then cosine decay to 0).')
flags.DEFINE_integer('checkpoint-every', Config.checkpoint_every, 'Checkpoint every N steps (and each epoch end).')
flags.DEFINE_integer('log-every', Config.log_every, 'Write training scalars to TensorBoard every N steps.')
flags.DEFINE_integer('val-images', Config.val_images, 'Validation images per epoch for the metrics.')
flags.DEFINE_integer('sample-images', Config.sample_images, 'Validation samples shown in TensorBoard.')
flags.DEFINE_integer('shuffle-buffer', Config.shuffle_buffer, 'Records in the shuffle buffer.')
flags.DEFINE_float('rebalance-mix', Config.rebalance_mix, 'Classification loss class weights '
                   '1 / ((1 - mix) p(colour) + mix / Q): 1 is no rebalancing, smaller favours rare colours more.',
                   lower_bound=0.01, upper_bound=1.0)
flags.DEFINE_float('zoom', Config.zoom, 'Augmentation: zoom into a random square of side zoom..1 of each photo\'s '
                   'long side (1: no zoom).', lower_bound=0.1, upper_bound=1.0)
flags.DEFINE_float('temperature', Config.temperature, 'Classification: the annealed mean\'s temperature, for '
                   'validation and the export (lower: more saturated, towards the most likely colour; 1: the mean). '
                   'trainer.export --temperature changes it without training again.', lower_bound=0.01, upper_bound=1.0)
flags.DEFINE_boolean('cache', Config.cache, 'Cache the serialized records in memory after the first epoch.')
flags.DEFINE_integer('seed', Config.seed, 'Shuffle seed (the same on every worker).')
flags.DEFINE_boolean('export', Config.export, 'Export a SavedModel when training ends.')
flags.DEFINE_integer('steps-per-loop', Config.steps_per_loop, 'Train steps per tf.function call: the host waits '
                     'for the device only between loops (ends early at --log-every/--checkpoint-every multiples).')
flags.DEFINE_boolean('xla', Config.xla, 'Compile each replica\'s forward and backward pass with XLA.')
flags.DEFINE_boolean('hints', Config.hints, 'Train with random hint points from the truth (Zhang et al. 2017), '
                     'so the export takes the user\'s colours at chosen places (colorize_hints); --nohints: '
                     'automatic only.')
flags.DEFINE_enum('optimizer', Config.optimizer, OPTIMIZERS, 'adam, or sgd (plain gradient descent).')
flags.DEFINE_integer('fine-tune-from', Config.fine_tune_from, 'unet: train the encoder too from this step on '
                     '(its batch norm stays in inference mode); 0: keep it frozen. Default: from a fifth of the '
                     'run (a resumed run keeps the step it began with).', lower_bound=0)
flags.DEFINE_float('encoder-lr-scale', Config.encoder_lr_scale, 'unet with --fine-tune-from: the encoder\'s '
                   'learning rate as a multiple of the decoder\'s, reached over a tenth of the remaining steps.',
                   lower_bound=0.0)
FLAGS = flags.FLAGS


# ---------------------------------------------------------------- distribution

def _cluster(tf_config):
  cluster = json.loads(tf_config or '{}').get('cluster', {})
  return sum(len(cluster.get(job, [])) for job in ('chief', 'worker'))


def make_strategy(name):
  """The tf.distribute strategy for --strategy. Call it before any other TF op (MultiWorkerMirrored needs it)."""
  if name == 'multi_worker' or (name == 'auto' and _cluster(os.environ.get('TF_CONFIG')) > 1):
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_physical_devices('GPU')
  if name == 'one_device' or (name == 'auto' and not gpus):
    return tf.distribute.OneDeviceStrategy('/gpu:0' if gpus else '/cpu:0')
  # Every GPU; on a host without any, every logical CPU device (the tests split the CPU in two).
  return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices('GPU' if gpus else 'CPU')])


def worker_role(strategy):
  """(is chief, name, number of workers) of this process. Only the chief writes what others read."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return True, 'chief', 1
  jobs = resolver.cluster_spec().as_dict()
  kind, index = resolver.task_type, resolver.task_id
  chief = kind == 'chief' or (kind == 'worker' and index == 0 and 'chief' not in jobs)
  return chief, f'{kind}{index}', _cluster(json.dumps({'cluster': jobs}))


# ---------------------------------------------------------------- the model and its step

class DelayedSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """`scale` x another schedule, 0 before step `start`, then ramped linearly over `ramp` steps.

  The encoder's optimizer sees every step's gradients from the first (its learning rate 0 until `start`), so
  Adam's moments are already estimated when it starts to move: no outsized first updates of pretrained weights.
  """

  def __init__(self, base, start, ramp, scale):
    self.base, self.start, self.ramp, self.scale = base, start, max(1, ramp), scale

  def __call__(self, step):
    base = self.base(step) if callable(self.base) else self.base
    ramp = tf.clip_by_value((tf.cast(step, tf.float32) - self.start) / self.ramp, 0.0, 1.0)
    return base * self.scale * ramp

  def get_config(self):
    return {'start': self.start, 'ramp': self.ramp, 'scale': self.scale}


def learning_rate(cfg, total_steps):
  """Adam's learning rate: a constant, or a schedule of the optimizer's step (checkpointed, so resuming keeps it)."""
  if cfg.schedule == 'constant':
    return cfg.learning_rate
  warmup = int(WARMUP * total_steps)
  return keras.optimizers.schedules.CosineDecay(
      0.0 if warmup else cfg.learning_rate, decay_steps=max(1, total_steps - warmup),
      warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)


class _PreReduced:
  """Mixin for a Keras optimizer whose gradients the train step has already all-reduced.

  Keras 3's TF optimizer all-reduces inside apply(); LossScaleOptimizer decides "finite" before that, from each
  replica's own gradients, so an overflow on one replica reaches every replica's weights. The step all-reduces
  first (Trainer._replica_step) and every replica decides on the same sums; this skips Keras' second all-reduce.
  The all-reduce test (plain SGD, tests/test_trainer.py) fails if the gradients are reduced twice or not at all.
  """

  def _all_reduce_sum_gradients(self, grads_and_vars):
    return list(grads_and_vars)


def make_optimizer(cfg, total_steps, encoder=False):
  """The optimizer of the colorizer's own layers, or (encoder=True) of a fine-tuned encoder's."""
  base = {'adam': keras.optimizers.Adam, 'sgd': keras.optimizers.SGD}[cfg.optimizer]
  rate = learning_rate(cfg, total_steps)
  if encoder:
    rate = DelayedSchedule(rate, cfg.fine_tune_from, (total_steps - cfg.fine_tune_from) // 10, cfg.encoder_lr_scale)
  optimizer = type(base.__name__, (_PreReduced, base), {})(rate)
  if cfg.precision == 'mixed_float16':   # bfloat16 has float32's range: no loss scaling needed
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def _check_xla(cfg, strategy):
  if not cfg.xla or strategy.num_replicas_in_sync == 1:
    return
  devices = strategy.extended.worker_devices
  if not all('GPU' in d.upper() for d in devices):
    raise app.UsageError(
        f'--xla with {strategy.num_replicas_in_sync} replicas needs every replica on a GPU (here: '
        f'{", ".join(devices)}): MirroredStrategy cannot synchronise batch norm inside XLA on other devices. '
        'Drop --xla, or use --strategy one_device.')


class NonFiniteLoss(RuntimeError):
  """A step's loss or all-reduced gradients were NaN or infinite; nothing was saved after the last good step."""


class Trainer:
  """Model, optimizer, step counter and the distributed train loop, built under `strategy`."""

  def __init__(self, cfg, meta, strategy, total_steps, encoder=None):
    """encoder: encoder_info(cfg, meta), computed by the caller when it has it (it reads the weights file).
    cfg.fine_tune_from None counts as 0 (frozen) here: train() resolves the default first (resolve_fine_tune)."""
    _check_xla(cfg, strategy)
    self.cfg, self.strategy = cfg, strategy
    encoder = encoder or encoder_info(cfg, meta)
    self.image_size = meta['image_size']
    self.global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    self.loss_fn = losses.make(cfg.loss, meta['ab_histogram']['counts'], cfg.rebalance_mix)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(cfg.precision)   # layers keep the policy they are built with
    try:
      with strategy.scope():
        self.model = model_lib.build(cfg.model, cfg.loss, self.image_size, meta['embedder']['dim'], cfg.width,
                                     hints=cfg.hints, **_model_args(cfg, encoder))
        # With --fine-tune-from the encoder's variables have their own optimizer (a delayed, smaller rate).
        tuned = {id(v) for v in model_lib.encoder_of(self.model).trainable_variables} if cfg.fine_tune_from else ()
        self._tuned = [id(v) in tuned for v in self.model.trainable_variables]
        self._optimizers = []
        for is_encoder in ((False, True) if cfg.fine_tune_from else (False,)):
          optimizer = make_optimizer(cfg, total_steps, encoder=is_encoder)
          # built now, so a checkpoint restores its slots at once
          optimizer.build([v for v, t in zip(self.model.trainable_variables, self._tuned) if t == is_encoder])
          self._optimizers.append(optimizer)
        self.optimizer = self._optimizers[0]
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    finally:
      keras.config.set_dtype_policy(previous)
    tracked = {'encoder_optimizer': self._optimizers[1]} if cfg.fine_tune_from else {}
    self.checkpoint = tf.train.Checkpoint(step=self.step, model=self.model, optimizer=self.optimizer, **tracked)
    # --xla compiles each replica's forward and backward pass (synchronised batch norm all-reduces inside it);
    # the gradient all-reduce and the update stay in the TF graph. Without XLA the pass is not a nested
    # tf.function: MirroredStrategy cannot merge_call (batch norm's all-reduce) from one, and inside XLA it only
    # skips merge_call when every device is a GPU, hence _check_xla.
    self._gradients = tf.function(self._forward_backward, jit_compile=True) if cfg.xla else self._forward_backward
    self.train_loop = tf.function(self._train_loop)
    self.predict = tf.function(self._predict, reduce_retracing=True)   # the last val batch is smaller

  def _forward_backward(self, x, y):
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      outputs = self.model(model_lib.features(self.model, x), training=True)
      loss = tf.reduce_sum(self.loss_fn(outputs, y['ab'], y['box'])) / self.global_batch
      scaled = self.optimizer.scale_loss(loss)
    return loss, tape.gradient(scaled, variables)

  def _replica_step(self, batch):
    """One replica's step: (the global batch's loss, whether it and the gradients are finite), the same on all."""
    x, y = data.on_device(batch)
    loss, grads = self._gradients(x, y)
    return self.apply_gradients(loss, grads)

  def apply_gradients(self, loss, grads):
    """All-reduce this replica's loss and gradients (each is already divided by the global batch, so the sum is
    the mean), decide finiteness on the sums, which every replica shares, and update the weights."""
    variables = self.model.trainable_variables
    present = [i for i, g in enumerate(grads) if g is not None]
    reduced = tf.distribute.get_replica_context().all_reduce('SUM', [loss] + [grads[i] for i in present])
    loss, summed = reduced[0], dict(zip(present, reduced[1:]))
    grads = [summed.get(i) for i in range(len(grads))]
    grads_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in summed.values()])
    for is_encoder, optimizer in zip((False, True), self._optimizers):
      optimizer.apply(*zip(*[(g, v) for g, v, t in zip(grads, variables, self._tuned) if t == is_encoder]))
    if self.cfg.precision == 'mixed_float16':
      # Overflowing float16 gradients are routine: the loss-scale optimizer skips the step and halves its scale.
      return loss, tf.math.is_finite(loss)
    return loss, tf.math.is_finite(loss) & grads_finite

  def _train_loop(self, iterator, num_steps):
    """Up to num_steps steps in one call; (mean loss, steps run, all finite). Stops at the first bad step."""
    total, done, finite = tf.constant(0.0), tf.constant(0, tf.int64), tf.constant(True)
    for _ in tf.range(tf.cast(num_steps, tf.int64)):
      loss, ok = self.strategy.run(self._replica_step, args=(next(iterator),))
      # Every replica holds the same all-reduced values: the first local one speaks for all, with no transfer.
      loss, ok = (self.strategy.experimental_local_results(v)[0] for v in (loss, ok))
      self.step.assign_add(1)
      total += loss
      done += 1
      if not ok:
        finite = tf.constant(False)
        break
    return total / tf.cast(tf.maximum(done, 1), tf.float32), done, finite

  def train_step(self, iterator):
    """One step (tests and benchmarks): the loss as a tensor."""
    return self.train_loop(iterator, tf.constant(1, tf.int64))[0]

  def _predict(self, batch):
    """One batch on this process only (validation): per-example losses, predicted ab, and the batch as Lab."""
    x, y = data.on_device(batch)
    outputs = self.model(model_lib.features(self.model, x), training=False)
    return (self.loss_fn(outputs, y['ab'], y['box']),
            model_lib.predict_ab(outputs, self.cfg.loss, self.image_size, self.cfg.temperature), x, y)

  def distribute(self, dataset):
    return iter(self.strategy.experimental_distribute_dataset(dataset))


# ---------------------------------------------------------------- validation

def _montage(l, pred_ab, true_ab):
  """grey | predicted | truth, side by side: float [S, 3S, 3] in [0, 1]."""
  grey = tf.repeat(colour.grey_rgb(l[..., 0])[..., None], 3, axis=-1)
  pred = colour.lab_to_rgb(tf.concat([l, pred_ab], -1))
  true = colour.lab_to_rgb(tf.concat([l, true_ab], -1))
  return tf.concat([grey, pred, true], axis=1)


def validate(trainer, dataset, ab_weights, cfg):
  """Mean loss, DESIGN.md's metrics on each image's content box (trainer.metrics), and sample montages."""
  results, loss_sum, samples = [], 0.0, []
  for batch in dataset:
    per_example, ab, x, y = trainer.predict(batch)
    loss_sum += float(tf.reduce_sum(per_example))
    for i in range(ab.shape[0]):
      t, l, h, w = y['box'][i].numpy()
      crop = lambda img: img[t:t + h, l:l + w]
      results.append(metrics.image_metrics(crop(tf.concat([x['l'][i], ab[i]], -1)),
                                           crop(tf.concat([x['l'][i], y['ab'][i]], -1)), ab_weights))
      if len(samples) < cfg.sample_images:
        samples.append(_montage(x['l'][i], ab[i], y['ab'][i]))
    if len(results) >= cfg.val_images:
      break
  summary = metrics.summarize(results)
  summary['loss'] = loss_sum / max(1, len(results))
  return summary, samples


# ---------------------------------------------------------------- the run

def encoder_info(cfg, meta):
  """What run.json records of a pretrained encoder (None for models without one), its weights checked.

  By default the encoder is the records' embedder with the same weights, found through metadata.json and checked
  against the sha256 recorded there, so `--data DIR --job-dir DIR` alone trains the default model.
  """
  if cfg.model not in model_lib.PRETRAINED:
    return None
  records = meta['embedder']
  name = cfg.encoder or records['name']
  if not cfg.encoder_weights and name == records['name']:
    embedder.check_weights(records)
    info = {key: records[key] for key in ('weights', 'weights_sha256') if key in records}
  else:
    info = embedder.describe(name, cfg.encoder_weights or 'imagenet', 'float32')   # its weights and sha256
    info = {key: info[key] for key in ('weights', 'weights_sha256') if key in info}
  if info['weights'] == 'random':
    logging.warning('the unet\'s encoder has RANDOM weights: it will colour no better than beta. Fine for tests; '
                    'for real training use imagenet weights or a weights file (--encoder-weights).')
  return dict(info, name=name)


def _model_args(cfg, encoder):
  """model_lib.build's arguments for the unet's encoder and output stride (none for the other models)."""
  if not encoder:
    return {}
  return {'encoder': encoder['name'], 'encoder_weights': encoder['weights'], 'output_stride': cfg.output_stride,
          'fine_tune_encoder': bool(cfg.fine_tune_from)}


def _run_info(cfg, meta, encoder, replicas):
  return {'global_batch': cfg.batch_size * replicas, 'replicas': replicas, 'model': cfg.model, 'loss': cfg.loss,
          'width': cfg.width, 'image_size': meta['image_size'], 'embedder': meta['embedder'], 'encoder': encoder,
          'output_stride': cfg.output_stride if encoder else None, 'ab_histogram': meta['ab_histogram'],
          'data': cfg.data,
          'precision': cfg.precision, 'batch_size': cfg.batch_size, 'learning_rate': cfg.learning_rate,
          'schedule': cfg.schedule, 'zoom': cfg.zoom, 'rebalance_mix': cfg.rebalance_mix,
          'temperature': cfg.temperature, 'hints': cfg.hints, 'seed': cfg.seed,
          'fine_tune_from': cfg.fine_tune_from or None,
          'encoder_lr_scale': cfg.encoder_lr_scale if cfg.fine_tune_from else None}


# The default fine-tuning step as a share of the run: the quality study's 500 of 2,500 steps.
FINE_TUNE_AFTER = 0.2


def resolve_fine_tune(cfg, total_steps, previous_run=None):
  """cfg with --fine-tune-from's default (None) made a step: the one a resumed run began with (previous_run: its
  run.json), else a fifth of total_steps for a model with a pretrained encoder, else 0 (frozen, or no encoder)."""
  if cfg.fine_tune_from is not None:
    return cfg
  if cfg.model not in model_lib.PRETRAINED:
    step = 0   # (a job dir of another model is then refused by jobdir.check_or_write_run, naming the model)
  elif previous_run is not None:
    step = previous_run.get('fine_tune_from') or 0   # whatever its length is now: the checkpoints must match
  elif cfg.precision == 'mixed_float16':
    logging.warning('the unet\'s encoder stays frozen: fine-tuning it does not support --precision '
                    'mixed_float16 (use mixed_bfloat16 or float32 to train it too; --fine-tune-from 0 says frozen)')
    step = 0
  else:
    step = int(total_steps * FINE_TUNE_AFTER)
  return dataclasses.replace(cfg, fine_tune_from=step)


def _check(cfg):
  if cfg.model not in model_lib.MODELS or cfg.loss not in model_lib.LOSSES:
    raise app.UsageError(f'--model must be one of {model_lib.MODELS} and --loss one of {model_lib.LOSSES}')
  if cfg.precision not in PRECISIONS or cfg.strategy not in STRATEGIES or cfg.schedule not in SCHEDULES:
    raise app.UsageError(f'--precision must be one of {PRECISIONS}, --strategy one of {STRATEGIES} and '
                         f'--schedule one of {SCHEDULES}')
  if min(cfg.epochs, cfg.batch_size, cfg.checkpoint_every, cfg.log_every, cfg.steps_per_loop) < 1 \
      or cfg.steps_per_epoch < 0:
    raise app.UsageError('--epochs, --batch-size, --checkpoint-every, --log-every and --steps-per-loop must be '
                         '>= 1, --steps-per-epoch >= 0')
  if cfg.optimizer not in OPTIMIZERS:
    raise app.UsageError(f'--optimizer must be one of {OPTIMIZERS}')
  _check_fine_tune(cfg)


def _check_fine_tune(cfg):
  if cfg.fine_tune_from and cfg.model not in model_lib.PRETRAINED:
    raise app.UsageError(f'--fine-tune-from trains a pretrained encoder: only --model {"/".join(model_lib.PRETRAINED)} '
                         f'has one (--model {cfg.model})')
  if cfg.fine_tune_from and cfg.precision == 'mixed_float16':
    # Two optimizers would keep two loss scales, and the loss is scaled by one of them.
    raise app.UsageError('--fine-tune-from does not support --precision mixed_float16; use mixed_bfloat16 or float32')


def _next_loop(trainer, iterator, num_steps, files, meta):
  """Up to num_steps train steps in one call; a corrupt record becomes an error naming its shard."""
  try:
    return trainer.train_loop(iterator, tf.constant(num_steps, tf.int64))
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    bad = data.find_corrupt_shard(files, meta)
    if bad:
      raise schema.SchemaError(f'{bad[0]}: corrupt record ({bad[1]}). Preprocess again, or remove the file and '
                               'its entry in metadata.json.') from e
    raise


def _loop_size(cfg, step, end):
  """Steps in the next loop: up to --steps-per-loop, ending at the next log or checkpoint multiple or epoch end."""
  stops = (step + cfg.steps_per_loop, end, (step // cfg.log_every + 1) * cfg.log_every,
           (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every)
  return min(stops) - step


def train(cfg):
  """Train (or resume) as cfg says; returns a dict: steps done, last training loss, export path (or None)."""
  _check(cfg)
  strategy = make_strategy(cfg.strategy)
  chief, name, num_workers = worker_role(strategy)
  meta = data.load_metadata(cfg.data)
  train_files = data.shards(cfg.data, 'train', meta)
  val_files = data.shards(cfg.data, 'val', meta) if meta['shards'].get('val') else []
  if not val_files:
    logging.warning('%s has no val shards: no validation metrics', cfg.data)
  if meta['image_size'] % model_lib.size_multiple(cfg.model):
    raise app.UsageError(f'--model {cfg.model} needs records whose image size is a multiple of '
                         f'{model_lib.size_multiple(cfg.model)}; '
                         f'{cfg.data} holds {meta["image_size"]} px: preprocess with --image-size 256 (or 128)')
  encoder = encoder_info(cfg, meta)
  p = jobdir.paths(cfg.job_dir)
  jobdir.check_global_batch(p, cfg.batch_size, strategy.num_replicas_in_sync)
  global_batch = cfg.batch_size * strategy.num_replicas_in_sync
  steps_per_epoch = cfg.steps_per_epoch or max(1, meta['counts']['train'] // global_batch)
  total_steps = cfg.epochs * steps_per_epoch
  cfg = resolve_fine_tune(cfg, total_steps, jobdir.read_run(p) if tf.io.gfile.exists(p.run_file) else None)
  _check_fine_tune(cfg)
  jobdir.check_or_write_run(p, _run_info(cfg, meta, encoder, strategy.num_replicas_in_sync), write=chief)

  trainer = Trainer(cfg, meta, strategy, total_steps=total_steps, encoder=encoder)
  # Every worker saves (saving may need them all), but only the chief into the real directory.
  own_dir = p.checkpoints if chief else tempfile.mkdtemp(prefix=f'colorizer-{name}-')
  manager = tf.train.CheckpointManager(trainer.checkpoint, own_dir, max_to_keep=3)
  latest = tf.train.latest_checkpoint(p.checkpoints)
  if latest:
    trainer.checkpoint.restore(latest).assert_existing_objects_matched()
  step = int(trainer.step.numpy())
  kind = type(strategy).__name__.replace('CollectiveAllReduceStrategy', 'MultiWorkerMirroredStrategy')
  logging.info('%s: %s with %d replica(s), global batch %d, %d steps per epoch; %s', name,
               kind, strategy.num_replicas_in_sync, trainer.global_batch, steps_per_epoch,
               f'resumed from {latest} at step {step}' if latest else 'starting from scratch')

  # The shuffle seed moves with the step, so a resumed run does not replay the order it already trained on.
  train_ds = data.dataset(train_files, meta, trainer.global_batch, training=True, seed=cfg.seed + step,
                          cache=cfg.cache, shuffle_buffer=cfg.shuffle_buffer, num_workers=num_workers,
                          zoom=cfg.zoom, hints=cfg.hints)
  val_ds = data.dataset(val_files, meta, cfg.batch_size, training=False) if val_files else None
  iterator = trainer.distribute(train_ds)
  ab_weights = abbins.rebalance_weights_grid(meta['ab_histogram']['counts'])
  writers = ({k: tf.summary.create_file_writer(f'{p.logs}/{k}') for k in ('train', 'val')} if chief
             else {k: tf.summary.create_noop_writer() for k in ('train', 'val')})

  loss = float('nan')
  for epoch in range(step // steps_per_epoch, cfg.epochs):
    end = (epoch + 1) * steps_per_epoch
    with tqdm.tqdm(total=steps_per_epoch, initial=step - epoch * steps_per_epoch, unit='step', leave=True,
                   desc=f'epoch {epoch + 1}/{cfg.epochs}', disable=not chief, dynamic_ncols=True) as bar:
      started, since, loss_sum = time.perf_counter(), step, 0.0
      while step < end:
        mean, done, finite = _next_loop(trainer, iterator, _loop_size(cfg, step, end), train_files, meta)
        step = int(trainer.step.numpy())   # the one host sync of the loop
        if not finite:
          raise NonFiniteLoss(
              f'step {step}: the loss or the all-reduced gradients are not finite (mean loss of the loop '
              f'{float(mean):.4g}). Training stopped; the last checkpoint in {p.checkpoints} is from before it. '
              'Resume with a lower --learning-rate, or --precision mixed_bfloat16 or float32 if the run used '
              'mixed_float16.')
        loss = float(mean)
        loss_sum += loss * int(done)
        bar.update(int(done))
        bar.set_postfix(loss=f'{loss:.4f}')
        if step % cfg.log_every == 0 or step == end:
          now = time.perf_counter()
          with writers['train'].as_default(step=step):
            tf.summary.scalar('loss', loss_sum / (step - since))   # the mean over the steps since the last log
            tf.summary.scalar('learning_rate', tf.convert_to_tensor(trainer.optimizer.learning_rate))
            tf.summary.scalar('images_per_second', (step - since) * trainer.global_batch / (now - started))
          started, since, loss_sum = now, step, 0.0
        if step % cfg.checkpoint_every == 0 or step == end:
          manager.save(checkpoint_number=step)
    if chief and val_ds is not None:
      summary, samples = validate(trainer, val_ds, ab_weights, cfg)
      with writers['val'].as_default(step=step):
        for key, value in summary.items():
          if key not in ('n', 'n_ssim'):
            tf.summary.scalar(key if key == 'loss' else f'metrics/{key}', value)
        if samples:
          tf.summary.image('samples', tf.stack(samples), max_outputs=len(samples),
                           description='grey | predicted | truth (validation images, whole canvas)')
      logging.info('epoch %d: %s', epoch + 1, ', '.join(f'{k} {v:.4g}' for k, v in summary.items()))
  for writer in writers.values():
    writer.flush()
  if not chief:
    shutil.rmtree(own_dir, ignore_errors=True)
  path = export.export(cfg.job_dir) if chief and cfg.export else None
  return {'step': step, 'loss': loss, 'export': path}


def main(argv):
  console.quiet_tensorflow_info()
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not FLAGS.data or not FLAGS['job-dir'].value:
    raise app.UsageError('--data DIR (the preprocessing output) and --job-dir DIR are required')
  cfg = Config(**{f.name: FLAGS[f.name.replace('_', '-')].value for f in dataclasses.fields(Config)})
  try:
    result = train(cfg)
  except (schema.SchemaError, jobdir.RunError, embedder.EmbedderError, export.ExportError,
          app.UsageError, NonFiniteLoss) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  loss = f' (loss {result["loss"]:.4f})' if np.isfinite(result['loss']) else ' (nothing left to train)'
  print(f'Training finished at step {result["step"]}{loss}'
        + (f'; exported {result["export"]}' if result['export'] else ''), flush=True)
  return 0


if __name__ == '__main__':
  app.run(main)
