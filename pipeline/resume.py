"""A killed job resumes: the output directory's work area, the job's fingerprint, and refusing to mix two jobs.

While a job runs, OUTPUT/.work/ holds
  job.json              the command that owns the directory (its flags and their fingerprint)
  inputs.json           what the listing found (count and an order-independent digest of the keys)
  units/u-NNNNNNNN.json one per committed work unit: its counts, ab histogram and failure lines
  pieces/u-NNNNNNNN.{train,val}.tfrecord   its records, until its shards are assembled
  tmp/                  files being written; each is renamed into place only when complete
The final names (shards, failures.jsonl, metadata.json, in that order) appear only complete, by a rename;
metadata.json last, so its presence means the job finished, and .work/ is then removed. Another job on the same
contract (serving/batch.py, the colouring job) names its own finishing file and what it writes (begin's
`finished` and `stray`); its work area is this one.

The same command again skips the committed units; anything that changes the output (other flags, other inputs)
is refused with a ResumeRefused that names the directory and the fix.
"""
import hashlib
import json
import os
import posixpath
import shutil
import uuid

from apache_beam.io.filesystems import FileSystems

from pipeline import schema

WORK = '.work'
JOB_FILE = 'job.json'
INPUTS_FILE = 'inputs.json'


class ResumeRefused(ValueError):
  """The output directory belongs to another job (or another listing of the inputs)."""


def fingerprint(command):
  return hashlib.sha256(json.dumps(command, sort_keys=True).encode()).hexdigest()


def work(output, *parts):
  return posixpath.join(output, WORK, *parts)


def unit_summary(output, unit):
  return work(output, 'units', f'u-{unit:08d}.json')


def piece(output, unit, split):
  return work(output, 'pieces', f'u-{unit:08d}.{split}.tfrecord')


def _read_json(path):
  with FileSystems.open(path, compression_type='uncompressed') as f:
    return json.loads(f.read().decode())


def exists(path):
  return FileSystems.exists(path)


def write_atomically(path, data, output):
  """Write bytes (or a callable that writes into a file object) under a temporary name, then rename into place.

  A reader, or a resumed job, sees either nothing or the whole file under `path`, never a part of it: a kill
  leaves at most a stray file under .work/tmp/ (removed with .work/ when the job ends).
  """
  tmp = work(output, 'tmp', f'{uuid.uuid4().hex}-{posixpath.basename(path)}')
  with FileSystems.create(tmp) as f:
    if callable(data):
      data(f)
    else:
      f.write(data)
  if '://' not in path:  # object stores have no folders; a local rename needs its target's
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  FileSystems.rename([tmp], [path])  # os.rename replaces atomically; on gs:// a rename is a copy, then a delete


def read_summary(output, unit):
  return _read_json(unit_summary(output, unit))


def _differences(old, new):
  keys = sorted(set(old) | set(new))
  return ', '.join(f'{k}: {old.get(k)!r} then, {new.get(k)!r} now' for k in keys if old.get(k) != new.get(k))


def _shards(output):
  """The preprocessing job's outputs in a directory without a record of the job: a shard, or None."""
  stray = FileSystems.match([schema.shard_glob(output, '*')], limits=[1])[0].metadata_list
  return f'shards ({posixpath.basename(stray[0].path)})' if stray else None


def begin(output, command, finished=schema.METADATA_FILE, stray=_shards):
  """Before the pipeline: claim `output` for `command`, or find it finished or resumable.

  finished: the file (in `output`) whose presence means the job finished; it holds the job's record under 'job'
  (its command and fingerprint). stray: output -> what of a job's output is there already without a record of
  the job that wrote it (e.g. 'shards (train-...)'), or None.
  Returns 'new', 'resume' or 'complete'; raises ResumeRefused when the directory belongs to another command.
  """
  fp = fingerprint(command)
  meta_path = posixpath.join(output, finished)
  if exists(meta_path):
    done = _read_json(meta_path).get('job', {})
    if done.get('fingerprint') == fp:
      finish(output)  # a kill between metadata.json and the clean-up leaves .work/ behind
      return 'complete'
    diff = _differences(done.get('command', {}), command) if done else 'it was written by an older version'
    raise ResumeRefused(f'{output} already holds the finished output of another job ({diff}); choose another '
                        f'--output, or delete {output} to write it again')
  job_path = work(output, JOB_FILE)
  if exists(job_path):
    old = _read_json(job_path)
    if old.get('fingerprint') == fp:
      return 'resume'
    raise ResumeRefused(f'{output} holds an unfinished job with other flags ({_differences(old["command"], command)}); '
                        f'run that command again to finish it, or choose another --output, or delete {output} '
                        f'(or {posixpath.join(output, WORK)}) to start over')
  found = stray(output)
  if found:
    raise ResumeRefused(f'{output} already holds {found} but no record of the '
                        f'job that wrote them; choose another --output, or delete them to start over')
  write_atomically(job_path, json.dumps({'fingerprint': fp, 'command': command}, indent=1, sort_keys=True).encode(),
                   output)
  return 'new'


def check_inputs(output, digest):
  """In the pipeline, after the listing: the first run records what it found; a resumed run must find the same.

  `digest` is (count, sum of key hashes): a file added, removed or renamed under an --input folder changes it.
  """
  count, total = digest
  path = work(output, INPUTS_FILE)
  found = {'count': count, 'digest': f'{total:016x}'}
  if exists(path):
    before = _read_json(path)
    if before != found:
      raise ResumeRefused(
          f'{output}: the inputs changed since this job started ({before["count"]} inputs then, {count} now, '
          f'digest {before["digest"]} then, {found["digest"]} now); restore them and run the same command, or '
          f'choose another --output, or delete {posixpath.join(output, WORK)} to start over')
  else:
    write_atomically(path, json.dumps(found).encode(), output)
  return count


def finish(output):
  """After metadata.json is in place: the work area is no longer needed."""
  root = work(output)
  if '://' not in root:
    shutil.rmtree(root, ignore_errors=True)
    return
  # Object stores: every object under the prefix (Beam's delete of `dir/` matches `dir/*`, one level only).
  found = [m.path for m in FileSystems.match([root + '/**'])[0].metadata_list]
  if found:
    FileSystems.delete(found)
