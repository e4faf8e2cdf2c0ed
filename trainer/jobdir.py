"""Where a training job keeps its things, the record of what its checkpoints are, and the export's file names.

  JOB_DIR/checkpoints/   tf.train.CheckpointManager files and run.json   ($AIP_CHECKPOINT_DIR on Vertex AI)
  JOB_DIR/logs/          TensorBoard: train/ and val/                    ($AIP_TENSORBOARD_LOG_DIR)
  JOB_DIR/export/N/      numbered SavedModels, TF Serving layout         ($AIP_MODEL_DIR: the SavedModel itself)
  JOB_DIR/export/N/assets.extra/colorizer.json   what the export is (INFO_FILE), for the serving front ends

This module imports no model code, so the front ends that load an export can use its names cheaply.

run.json describes the model the checkpoints belong to (architecture, loss, data contract, ab histogram), so
that `python -m trainer.export --job-dir` needs nothing else and a resumed run cannot load another model's
weights by mistake.
"""
import dataclasses
import json
import os
import posixpath

import tensorflow as tf

RUN_FILE = 'run.json'
INFO_FILE = posixpath.join('assets.extra', 'colorizer.json')
# What must agree for checkpoints to be resumed: everything that shapes the variables or the data they fit.
MODEL_KEYS = ('model', 'loss', 'width', 'image_size', 'embedder', 'encoder', 'output_stride', 'hints', 'fine_tune_from')
# What a run.json written before a key existed meant by its absence.
BEFORE = {'hints': False}


class RunError(RuntimeError):
  """The job directory does not fit this run (other model, no checkpoint)."""


@dataclasses.dataclass(frozen=True)
class Paths:
  checkpoints: str
  logs: str
  export_base: str
  export_direct: bool   # AIP_MODEL_DIR: Vertex AI wants the SavedModel in it, not in a numbered sub-directory

  @property
  def run_file(self):
    return posixpath.join(self.checkpoints, RUN_FILE)


def paths(job_dir):
  job_dir = job_dir.rstrip('/')
  model_dir = os.environ.get('AIP_MODEL_DIR')
  return Paths(checkpoints=os.environ.get('AIP_CHECKPOINT_DIR') or posixpath.join(job_dir, 'checkpoints'),
               logs=os.environ.get('AIP_TENSORBOARD_LOG_DIR') or posixpath.join(job_dir, 'logs'),
               export_base=model_dir.rstrip('/') if model_dir else posixpath.join(job_dir, 'export'),
               export_direct=bool(model_dir))


def read_run(p):
  if not tf.io.gfile.exists(p.run_file):
    raise RunError(f'{p.run_file} not found: no training run has written checkpoints there; train first with '
                   'python -m trainer.task --data DIR --job-dir JOB_DIR')
  with tf.io.gfile.GFile(p.run_file) as f:
    return json.load(f)


def check_or_write_run(p, run, write):
  """Refuse a job directory whose checkpoints are of another model; record this run's (if `write`)."""
  if tf.io.gfile.exists(p.run_file):
    old = dict(BEFORE, **read_run(p))
    diff = [k for k in MODEL_KEYS if old.get(k) != run.get(k)]
    if diff:
      raise RunError(f'{p.run_file}: the checkpoints in {p.checkpoints} are of another model ('
                     + '; '.join(f'{k}: {old.get(k)!r} there, {run.get(k)!r} now' for k in diff)
                     + '). Resume with the flags and data it was started with, or use a new --job-dir.')
  if write:
    tf.io.gfile.makedirs(p.checkpoints)
    with tf.io.gfile.GFile(p.run_file, 'w') as f:
      f.write(json.dumps(run, indent=2, sort_keys=True))


def check_global_batch(p, batch_size, replicas):
  """Refuse to resume checkpoints on a global batch other than theirs (e.g. 8 GPUs, then 4 with the same flags).

  The global batch sets the steps per epoch and so the learning-rate schedule and the data order: resuming on
  another one would silently train another schedule. Another replica count is fine with the same global batch.
  """
  if not tf.io.gfile.exists(p.run_file) or not tf.train.latest_checkpoint(p.checkpoints):
    return
  old = read_run(p)
  before = old.get('global_batch')
  if before is None or before == batch_size * replicas:
    return
  advice = (f'pass --batch-size {before // replicas} to continue with the same global batch'
            if before % replicas == 0 else
            f'run on a replica count that divides {before}, with --batch-size {before} / replicas')
  raise RunError(f'{p.run_file}: the checkpoints in {p.checkpoints} were trained with a global batch of {before} '
                 f'({old.get("replicas")} replica(s) x {old.get("batch_size")}); this run has {replicas} replica(s) '
                 f'x --batch-size {batch_size} = {batch_size * replicas}, which would change the schedule. '
                 f'{advice[0].upper() + advice[1:]}, or use a new --job-dir.')
