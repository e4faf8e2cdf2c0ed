r"""Does the input pipeline hide behind the training step? (DESIGN.md target: real >= 0.95 x synthetic.)

  python benchmarks/train.py [--data DIR] [--batch-size 8] [--steps 10] [--width 1.0] [--strategy auto]
      [--model fusion|beta] [--loss mse|classification]

Prints, in one run and on the same batches:
  input     records/s the tf.data pipeline alone delivers (read, parse, flip; no model)
  synthetic images/s the train step consumes on one batch held in memory
  real      images/s of real training on the records (the trainer's own input pipeline)
Synthetic and real alternate (two rounds each) so that other load on the machine hits both alike. Without
--data, the scikit-image sample photos are preprocessed into a temporary directory first (DirectRunner).
The batch size defaults to 8 here (trainer.task's default is 16).
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

from trainer import console, data, task

# --data, --batch-size, --width, --model, --loss and --strategy are trainer.task's own flags.
flags.DEFINE_integer('steps', 10, 'Timed train steps per measurement (after 2 warm-up steps).')
flags.DEFINE_integer('input-batches', 50, 'Batches timed for the input pipeline alone.')
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
  it = iter(dataset)
  next(it)
  start, n = time.perf_counter(), 0
  for _ in range(batches):
    x, _ = next(it)
    n += int(x['l'].shape[0])
  return n / (time.perf_counter() - start)


def _train_rate(trainer, iterator, steps):
  for _ in range(WARMUP):
    trainer.train_step(iterator)
  float(trainer.train_step(iterator))     # wait for everything queued
  start = time.perf_counter()
  for _ in range(steps):
    loss = trainer.train_step(iterator)
  float(loss)
  return steps * trainer.global_batch / (time.perf_counter() - start)


def main(argv):
  del argv
  console.quiet_tensorflow_info()
  if not FLAGS['batch-size'].present:
    FLAGS['batch-size'].value = 8
  strategy = task.make_strategy(FLAGS.strategy)
  records = _records()
  meta = data.load_metadata(records)
  files = data.shards(records, 'train', meta)
  cfg = task.Config(data=records, job_dir='', batch_size=FLAGS['batch-size'].value, model=FLAGS.model,
                    loss=FLAGS.loss, width=FLAGS.width, strategy=FLAGS.strategy)
  trainer = task.Trainer(cfg, meta, strategy, total_steps=1)
  real = data.dataset(files, meta, trainer.global_batch, training=True, shuffle_buffer=256)
  load_before = os.getloadavg()[0]

  input_rate = _input_rate(real, FLAGS['input-batches'].value)
  batch = next(iter(real))
  synthetic_it = trainer.distribute(tf.data.Dataset.from_tensors(batch).repeat())
  real_it = trainer.distribute(real)
  rates = {'synthetic': [], 'real': []}
  for _ in range(2):
    rates['synthetic'].append(_train_rate(trainer, synthetic_it, FLAGS.steps))
    rates['real'].append(_train_rate(trainer, real_it, FLAGS.steps))
  synthetic, real_rate = (sum(rates[k]) / len(rates[k]) for k in ('synthetic', 'real'))

  size = meta['image_size']
  print(f'records {records}: {meta["counts"]["train"]} train records, {size}x{size}, '
        f'{meta["embedder"]["name"]} embeddings')
  print(f'{type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s), global batch '
        f'{trainer.global_batch}, --model {FLAGS.model} --loss {FLAGS.loss} --width {FLAGS.width}, '
        f'{FLAGS.steps} steps x 2 rounds')
  print(f'input      {input_rate:9.1f} records/s   (input pipeline alone)')
  print(f'synthetic  {synthetic:9.2f} images/s    (train step on one in-memory batch; rounds '
        + ', '.join(f'{r:.2f}' for r in rates['synthetic']) + ')')
  print(f'real       {real_rate:9.2f} images/s    (training on the records; rounds '
        + ', '.join(f'{r:.2f}' for r in rates['real']) + ')')
  print(f'real / synthetic = {real_rate / synthetic:.3f}  (target >= 0.95)   '
        f'load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs')


if __name__ == '__main__':
  app.run(main)
