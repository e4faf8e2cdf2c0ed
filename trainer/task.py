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
# This module is the outer loop (epochs, checkpoints, logs, TensorBoard, the export at the end) and the command;
# train(trainer.config.Config(...)) is the library entry. The flags are trainer.config's, the inner loop is
# trainer.loop, the strategy trainer.distribute, the optimizers trainer.optimizers, validation trainer.validation
# and run.json trainer.runinfo. (A comment, not the docstring: --help prints the docstring.)
from pipeline import quiet

tf = quiet.tensorflow()  # before anything else imports it, so its start-up notices stay off the terminal

import shutil
import sys
import tempfile
import time

import numpy as np
import tqdm
from absl import app, logging

from pipeline import cli, embedder, schema
from trainer import (abbins, config, console, data, distribute, encoder as encoder_lib, export, jobdir, loop,
                     model as model_lib, runinfo, validation)


class NonFiniteLoss(RuntimeError):
  """A step's loss or all-reduced gradients were NaN or infinite; nothing was saved after the last good step."""


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
  config.check(cfg)
  strategy = distribute.make_strategy(cfg.strategy)
  chief, name, num_workers = distribute.worker_role(strategy)
  meta = data.load_metadata(cfg.data)
  train_files = data.shards(cfg.data, 'train', meta)
  val_files = data.shards(cfg.data, 'val', meta) if meta['shards'].get('val') else []
  if not val_files:
    logging.warning('%s has no val shards: no validation metrics', cfg.data)
  if meta['image_size'] % model_lib.size_multiple(cfg.model):
    raise app.UsageError(f'--model {cfg.model} needs records whose image size is a multiple of '
                         f'{model_lib.size_multiple(cfg.model)}; '
                         f'{cfg.data} holds {meta["image_size"]} px: preprocess with --image-size 256 (or 128)')
  encoder = encoder_lib.resolve(cfg, meta)
  p = jobdir.paths(cfg.job_dir)
  runinfo.check_global_batch(p, cfg.batch_size, strategy.num_replicas_in_sync)
  global_batch = cfg.batch_size * strategy.num_replicas_in_sync
  steps_per_epoch = cfg.steps_per_epoch or max(1, meta['counts']['train'] // global_batch)
  total_steps = cfg.epochs * steps_per_epoch
  cfg = config.resolve_fine_tune(cfg, total_steps, runinfo.read(p) if tf.io.gfile.exists(p.run_file) else None)
  runinfo.check_or_write(p, runinfo.record(cfg, meta, encoder, strategy.num_replicas_in_sync), write=chief)

  trainer = loop.Trainer(cfg, meta, strategy, total_steps=total_steps, encoder=encoder)
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
      summary, samples = validation.validate(trainer, val_ds, ab_weights, cfg)
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


def main(cfg, argv):
  console.quiet_tensorflow_info()
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not cfg.data or not cfg.job_dir:
    raise app.UsageError('--data DIR (the preprocessing output) and --job-dir DIR are required')
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
  cli.run(main, config.Config)
