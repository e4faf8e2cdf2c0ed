"""Where a training job keeps its things, the record of what its checkpoints are, and the export's file names.

  JOB_DIR/checkpoints/   tf.train.CheckpointManager files and run.json   ($AIP_CHECKPOINT_DIR on Vertex AI)
  JOB_DIR/logs/          TensorBoard: train/ and val/                    ($AIP_TENSORBOARD_LOG_DIR)
  JOB_DIR/export/N/      numbered SavedModels, TF Serving layout         ($AIP_MODEL_DIR: the SavedModel itself)
  JOB_DIR/export/N/assets.extra/colorizer.json   what the export is (INFO_FILE), for the serving front ends

This module imports no model code, so the front ends that load an export can use its names cheaply.

run.json describes the model the checkpoints belong to (its layout: trainer.runinfo), so that
`python -m trainer.export --job-dir` needs nothing else and a resumed run cannot load another model's weights by
mistake.
"""
import dataclasses
import json
import os
import posixpath

import tensorflow as tf

RUN_FILE = 'run.json'
INFO_FILE = posixpath.join('assets.extra', 'colorizer.json')


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
  """run.json as written (trainer.runinfo.read gives it in today's layout)."""
  if not tf.io.gfile.exists(p.run_file):
    raise RunError(f'{p.run_file} not found: no training run has written checkpoints there; train first with '
                   'python -m trainer.task --data DIR --job-dir JOB_DIR')
  with tf.io.gfile.GFile(p.run_file) as f:
    return json.load(f)


def write_run(p, run):
  tf.io.gfile.makedirs(p.checkpoints)
  with tf.io.gfile.GFile(p.run_file, 'w') as f:
    f.write(json.dumps(run, indent=2, sort_keys=True))
