"""run.json, what a job directory's checkpoints are: the run's resolved config (`dataclasses.asdict` of a
trainer.config.Config) beside the facts that come from the data, and the export's colorizer.json derived from it.

  {"config": {every trainer.task flag, resolved: fine_tune_from is a step},
   "image_size": S, "embedder": metadata.json's, "encoder": {"name", "weights"[, "weights_sha256"]} or null,
   "ab_histogram": metadata.json's, "replicas": R, "global_batch": B}

The checkpoints resume only where `describe` agrees: the config fields marked shapes_checkpoint and the facts that
shape the variables. A run.json written before the config was recorded whole is flat (the config's keys among the
facts, None for "not applicable", no 'hints' before hint points existed); `upgrade` reads it as the above, so those
job directories still export and resume.
"""
import dataclasses

import tensorflow as tf

from trainer import config, jobdir

# The facts beside the config in the flat layout (fixed: that layout is only read now).
FLAT_FACTS = ('image_size', 'embedder', 'encoder', 'ab_histogram', 'replicas', 'global_batch')
# The facts that shape the checkpoints' variables or the data they fit.
SHAPING_FACTS = ('image_size', 'embedder', 'encoder')


def record(cfg, meta, encoder, replicas):
  """run.json of a run: cfg resolved (trainer.config.resolve_fine_tune), meta the records' metadata, encoder
  trainer.encoder.resolve's."""
  return {'config': dataclasses.asdict(cfg), 'image_size': meta['image_size'], 'embedder': meta['embedder'],
          'encoder': encoder, 'ab_histogram': meta['ab_histogram'], 'replicas': replicas,
          'global_batch': cfg.batch_size * replicas}


def upgrade(run):
  """A run.json record in today's layout, whichever layout it was written in."""
  if 'config' in run:
    return run
  settings = {key: value for key, value in run.items() if key not in FLAT_FACTS}
  settings.setdefault('hints', False)                        # written before hint points existed
  settings['fine_tune_from'] = settings.get('fine_tune_from') or 0   # None was frozen
  return dict({key: run[key] for key in FLAT_FACTS if key in run}, config=settings)


def read(p):
  """The job's run.json (jobdir.paths p), in today's layout."""
  return upgrade(jobdir.read_run(p))


def describe(run):
  """What the checkpoints are: the config fields that shape them and the facts that do. A model without an
  encoder has no output stride (the flag does not apply to it)."""
  run = upgrade(run)
  described = {name: run['config'].get(name) for name in config.shaping_fields()}
  described.update({key: run.get(key) for key in SHAPING_FACTS})
  if not described['encoder']:
    described['output_stride'] = None
  return described


def export_info(run, **export):
  """colorizer.json: what the exported model is (describe), its training histogram, and the export's own facts."""
  return dict(describe(run), ab_histogram=upgrade(run)['ab_histogram'], **export)


def check_or_write(p, run, write):
  """Refuse a job directory whose checkpoints are of another model; record this run's (if `write`)."""
  if tf.io.gfile.exists(p.run_file):
    old, new = describe(jobdir.read_run(p)), describe(run)
    diff = [key for key in new if old[key] != new[key]]
    if diff:
      raise jobdir.RunError(f'{p.run_file}: the checkpoints in {p.checkpoints} are of another model ('
                            + '; '.join(f'{k}: {old[k]!r} there, {new[k]!r} now' for k in diff)
                            + '). Resume with the flags and data it was started with, or use a new --job-dir.')
  if write:
    jobdir.write_run(p, run)


def check_global_batch(p, batch_size, replicas):
  """Refuse to resume checkpoints on a global batch other than theirs (e.g. 8 GPUs, then 4 with the same flags).

  The global batch sets the steps per epoch and so the learning-rate schedule and the data order: resuming on
  another one would silently train another schedule. Another replica count is fine with the same global batch.
  """
  if not tf.io.gfile.exists(p.run_file) or not tf.train.latest_checkpoint(p.checkpoints):
    return
  old = read(p)
  before = old.get('global_batch')
  if before is None or before == batch_size * replicas:
    return
  advice = (f'pass --batch-size {before // replicas} to continue with the same global batch'
            if before % replicas == 0 else
            f'run on a replica count that divides {before}, with --batch-size {before} / replicas')
  raise jobdir.RunError(
      f'{p.run_file}: the checkpoints in {p.checkpoints} were trained with a global batch of {before} '
      f'({old.get("replicas")} replica(s) x {old["config"].get("batch_size")}); this run has {replicas} replica(s) '
      f'x --batch-size {batch_size} = {batch_size * replicas}, which would change the schedule. '
      f'{advice[0].upper() + advice[1:]}, or use a new --job-dir.')
