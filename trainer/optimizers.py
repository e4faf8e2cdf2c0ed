"""The optimizers of a run: the learning-rate schedule, the fine-tuned encoder's delayed one, and the Keras
optimizers that take gradients the train step has already all-reduced."""
import keras
import tensorflow as tf

WARMUP = 0.02   # share of the steps spent warming up with --schedule cosine


@keras.saving.register_keras_serializable(package='colorizer')
class DelayedSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """`scale` x another schedule, 0 before step `start`, then ramped linearly over `ramp` steps.

  The encoder's optimizer sees every step's gradients from the first (its learning rate 0 until `start`), so
  Adam's moments are already estimated when it starts to move: no outsized first updates of pretrained weights.
  """

  def __init__(self, base, start, ramp, scale):
    """base: a LearningRateSchedule or a constant."""
    self.base, self.start, self.ramp, self.scale = base, start, max(1, ramp), scale

  def __call__(self, step):
    base = self.base(step) if callable(self.base) else self.base
    ramp = tf.clip_by_value((tf.cast(step, tf.float32) - self.start) / self.ramp, 0.0, 1.0)
    return base * self.scale * ramp

  def get_config(self):
    base = (keras.optimizers.schedules.serialize(self.base)
            if isinstance(self.base, keras.optimizers.schedules.LearningRateSchedule) else self.base)
    return {'base': base, 'start': self.start, 'ramp': self.ramp, 'scale': self.scale}

  @classmethod
  def from_config(cls, config):
    base = config['base']
    if isinstance(base, dict):
      base = keras.optimizers.schedules.deserialize(base)
    return cls(**dict(config, base=base))


def learning_rate(cfg, total_steps):
  """The learning rate: a constant, or a schedule of the optimizer's step (checkpointed, so resuming keeps it)."""
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
  first (trainer.loop.Trainer.apply_gradients) and every replica decides on the same sums; this skips Keras'
  second all-reduce. The all-reduce test (plain SGD, tests/test_trainer.py) fails if the gradients are reduced
  twice or not at all.
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
