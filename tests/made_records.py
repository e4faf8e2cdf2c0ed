"""The Beam job's records for the tests: made once per distinct command line in a test process, then shared.

The job takes tens of seconds even on the sample photos, and many test modules train on the same records.
Tests only read these directories: a test that alters records copies them first (as the bad-data tests do).
"""
import atexit
import functools
import pathlib
import shutil
import tempfile


class Records:
  """records(*flags) -> the output directory of `python -m pipeline.preprocess FLAGS --output DIR`."""

  def __init__(self, root):
    self._root = pathlib.Path(root)
    self._made = {}

  def __call__(self, *flags):
    from pipeline import cli, preprocess
    cfg, beam_args = preprocess.parse(['prog', *flags])
    # The same configuration however its flags are spelt or ordered is the same job.
    key = (tuple(cli.as_flags(cfg)), tuple(beam_args))
    if key not in self._made:
      out = self._root / f'records-{len(self._made)}'
      preprocess.run(['prog', *flags, '--output', str(out)])
      self._made[key] = str(out)
    return self._made[key]

  def photos(self, count):
    """A folder of the first `count` sample photos (their keys: relative to it), the same folder every call."""
    from pipeline import sources
    folder = self._root / f'photos-{count}'
    if not folder.is_dir():
      folder.mkdir(parents=True)
      for path in sources.sample_photos()[:count]:
        shutil.copy(path, folder)
    return str(folder)


@functools.cache
def shared():
  """The test process's one Records (fixtures reach it as make_records; module-level helpers call this)."""
  root = tempfile.mkdtemp(prefix='test-records-')
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  return Records(root)
