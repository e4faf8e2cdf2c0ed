"""The tf.distribute strategy of a run, this process's role in it, and what XLA needs of its devices."""
import json
import os

import tensorflow as tf
from absl import app


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


def check_xla(cfg, strategy):
  """Refuse --xla on several replicas that are not all GPUs (see trainer.loop.Trainer)."""
  if not cfg.xla or strategy.num_replicas_in_sync == 1:
    return
  devices = strategy.extended.worker_devices
  if not all('GPU' in d.upper() for d in devices):
    raise app.UsageError(
        f'--xla with {strategy.num_replicas_in_sync} replicas needs every replica on a GPU (here: '
        f'{", ".join(devices)}): MirroredStrategy cannot synchronise batch norm inside XLA on other devices. '
        'Drop --xla, or use --strategy one_device.')
