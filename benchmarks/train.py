r"""Does the input pipeline hide behind the training step? (ARCHITECTURE.md target: real >= 0.95 x synthetic.)

  python benchmarks/train.py [--data DIR] [--batch-size 8] [--steps 10] [--width 1.0] [--strategy auto]
      [--model fusion|beta] [--loss mse|classification] [--zoom 0.5] [--steps-per-loop 10] [--xla] [--input-only]
      [--fine-tune-from 1]

Prints, in one run and on the same batches:
  input     records/s the tf.data pipeline alone delivers (read, parse, inflate, draw flips and zooms: the
            trainer's input with augmentation on; the device applies them); run under `taskset -c 0` for one core
  synthetic steps/s and images/s the train loop consumes on one batch held in memory, with one step per
            tf.function call (K = 1) and with --steps-per-loop K steps per call; the host syncs once per call,
            as trainer.task does. With a tiny model (--width 0.05 on 64 px records) the step is almost free and
            the ratio is the host overhead per call
  real      images/s of real training on the records (the trainer's own input pipeline), K steps per call
Synthetic and real alternate (two rounds each) so that other load on the machine hits both alike. Without
--data, the scikit-image sample photos are preprocessed into a temporary directory first (DirectRunner).
The batch size defaults to 8 here (trainer.task's default is 16). The unet's encoder is frozen here unless
--fine-tune-from says otherwise (any step: the encoder's backward pass then runs on every step timed).
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline import quiet

tf = quiet.tensorflow()

from absl import app, flags

from pipeline import cli
from trainer import config, console, data, distribute, loop

# trainer.task's flags (--data, --batch-size, --width, --model, --loss, --strategy, ...) and the benchmark's own.
cli.define(config.Config)
flags.DEFINE_integer('steps', 10, 'Timed train steps per measurement (after 2 warm-up steps).')
flags.DEFINE_integer('input-batches', 50, 'Batches timed for the input pipeline alone.')
flags.DEFINE_boolean('input-only', False, 'Measure the input pipeline alone (no model).')
FLAGS = flags.FLAGS
WARMUP = 2


def _records():
  if FLAGS.data:
    return FLAGS.data
  out = tempfile.mkdtemp(prefix='bench-records-')
  # In its own process: Beam's DirectRunner in this one slowed the training that followed to a crawl.
  subprocess.run([sys.executable, '-m', 'pipeline.preprocess', '--output', out, '--embedder', 'mobilenet_v2',
                  '--embedder-weights', 'random', '--num-shards', '2', '--runner', 'DirectRunner'],
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True)
  return out


def _input_rate(dataset, batches):
  """(records/s of wall time, records per CPU-second of this process). The second is what a core delivers when
  other processes share it (process CPU time counts every tf.data thread; without them both agree on one core)."""
  it = iter(dataset)
  next(it)
  start, cpu, n = time.perf_counter(), time.process_time(), 0
  for _ in range(batches):
    n += int(next(it)['box'].shape[0])
  return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def _train_rate(trainer, iterator, steps, per_loop):
  """Steps/s over `steps` steps run in calls of `per_loop` steps, reading the step counter after each call."""
  k = tf.constant(per_loop, tf.int64)
  for _ in range(WARMUP):
    trainer.train_loop(iterator, k)
  int(trainer.step.numpy())     # wait for everything queued
  start = time.perf_counter()
  for _ in range(max(1, steps // per_loop)):
    trainer.train_loop(iterator, k)
    int(trainer.step.numpy())   # the trainer's one host sync per call
  return max(1, steps // per_loop) * per_loop / (time.perf_counter() - start)


def main(argv):
  del argv
  console.quiet_tensorflow_info()
  if not FLAGS['batch-size'].present:
    FLAGS['batch-size'].value = 8
  strategy = distribute.make_strategy(FLAGS.strategy)
  records = _records()
  meta = data.load_metadata(records)
  files = data.shards(records, 'train', meta)
  cfg = config.Config(data=records, job_dir='', batch_size=FLAGS['batch-size'].value, model=FLAGS.model,
                      loss=FLAGS.loss, width=FLAGS.width, strategy=FLAGS.strategy, xla=FLAGS.xla,
                      fine_tune_from=FLAGS['fine-tune-from'].value or 0)
  global_batch = cfg.batch_size * strategy.num_replicas_in_sync
  real = data.dataset(files, meta, global_batch, training=True, shuffle_buffer=256, zoom=FLAGS.zoom)
  load_before = os.getloadavg()[0]
  input_rate, input_per_cpu = _input_rate(real, FLAGS['input-batches'].value)
  size = meta['image_size']
  print(f'records {records}: {meta["counts"]["train"]} train records, {size}x{size}, '
        f'{meta["embedder"]["name"]} embeddings; --zoom {FLAGS.zoom}, global batch {global_batch}')
  print(f'input      {input_rate:9.1f} records/s   {input_per_cpu:9.1f} records per CPU-second   (input pipeline '
        f'alone, augmentation drawn; {len(os.sched_getaffinity(0))} CPU(s) allowed)')
  if FLAGS['input-only'].value:
    return

  trainer = loop.Trainer(cfg, meta, strategy, total_steps=1)
  batch = next(iter(real))
  synthetic_it = trainer.distribute(tf.data.Dataset.from_tensors(batch).repeat())
  real_it = trainer.distribute(real)
  k = FLAGS['steps-per-loop'].value
  rates = {'synthetic K=1': [], f'synthetic K={k}': [], 'real': []}
  for _ in range(2):
    rates['synthetic K=1'].append(_train_rate(trainer, synthetic_it, FLAGS.steps, 1))
    rates[f'synthetic K={k}'].append(_train_rate(trainer, synthetic_it, FLAGS.steps, k))
    rates['real'].append(_train_rate(trainer, real_it, FLAGS.steps, k))
  mean = {name: sum(r) / len(r) for name, r in rates.items()}
  print(f'{type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s), --model {FLAGS.model} --loss '
        f'{FLAGS.loss} --width {FLAGS.width}{" --xla" if FLAGS.xla else ""}, {FLAGS.steps} steps x 2 rounds')
  for name, value in mean.items():
    print(f'{name:16s} {value:9.2f} steps/s  {value * global_batch:9.2f} images/s   (rounds '
          + ', '.join(f'{r:.2f}' for r in rates[name]) + ')')
  print(f'synthetic K={k} / K=1 = {mean[f"synthetic K={k}"] / mean["synthetic K=1"]:.2f}   '
        f'real / synthetic K={k} = {mean["real"] / mean[f"synthetic K={k}"]:.3f}  (target >= 0.95)   '
        f'load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs')


if __name__ == '__main__':
  app.run(main)
