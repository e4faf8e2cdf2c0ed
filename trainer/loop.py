"""The inner loop (as TF Model Garden's Orbit keeps it apart from the outer one): the model, its optimizers and
checkpoint object, and one tf.function that runs up to K distributed train steps; predict for validation.

trainer.task's outer loop decides how many steps each call runs, saves the checkpoints, logs and exports.
"""
import keras
import tensorflow as tf

from trainer import abbins, data, distribute, encoder as encoder_lib, losses, model as model_lib, optimizers


class Trainer:
  """Model, optimizer, step counter and the distributed train loop, built under `strategy`."""

  def __init__(self, cfg, meta, strategy, total_steps, encoder=None):
    """encoder: trainer.encoder.resolve(cfg, meta), computed by the caller when it has it (it reads the weights
    file). cfg.fine_tune_from None counts as 0 (frozen) here: train() resolves the default first
    (trainer.config.resolve_fine_tune)."""
    distribute.check_xla(cfg, strategy)
    self.cfg, self.strategy = cfg, strategy
    encoder = encoder or encoder_lib.resolve(cfg, meta)
    self.image_size = meta['image_size']
    self.global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    self.loss_fn = losses.make(cfg.loss, meta['ab_histogram']['counts'], cfg.rebalance_mix)
    # Validation decodes as the export will by default (the colour strength's default).
    self.decoding = abbins.Decoding.of_training(meta['ab_histogram']['counts'], cfg.rebalance_mix, cfg.temperature,
                                                cfg.strength)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(cfg.precision)   # layers keep the policy they are built with
    try:
      with strategy.scope():
        self.model = model_lib.build(cfg.model, cfg.loss, self.image_size, meta['embedder']['dim'], cfg.width,
                                     hints=cfg.hints, **encoder_lib.model_args(cfg, encoder))
        # With --fine-tune-from the encoder's variables have their own optimizer (a delayed, smaller rate).
        tuned = {id(v) for v in model_lib.encoder_of(self.model).trainable_variables} if cfg.fine_tune_from else ()
        self._tuned = [id(v) in tuned for v in self.model.trainable_variables]
        self._optimizers = []
        for is_encoder in ((False, True) if cfg.fine_tune_from else (False,)):
          optimizer = optimizers.make_optimizer(cfg, total_steps, encoder=is_encoder)
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
    # skips merge_call when every device is a GPU, hence distribute.check_xla.
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
            model_lib.predict_ab(outputs, self.cfg.loss, self.image_size, self.decoding), x, y)

  def distribute(self, dataset):
    return iter(self.strategy.experimental_distribute_dataset(dataset))
