"""The export into a watched bucket (GCS emulator, tests/gcs.py): a version appears complete or not at all, and a
failed export leaves nothing behind. TensorFlow's gs:// filesystem runs in a child process pointed at the
emulator, as in tests/test_gcs_chain.py; this process watches the bucket meanwhile, as TF Serving would."""
import subprocess
import sys
import time

from gcs import gcs  # noqa: F401  (the fixture)
from paths import REPO

EXPORT = """
import sys
sys.path.insert(0, {tests!r})
from pipeline import quiet
tf = quiet.tensorflow()
import serving_model
fail_after = int(sys.argv[2])
if fail_after >= 0:   # a copy that fails part-way (a lost connection, a quota), after fail_after files
  copy, done = tf.io.gfile.copy, []
  def failing(src, dst, overwrite=False):
    if len(done) == fail_after:
      raise tf.errors.UnavailableError(None, None, 'connection reset by the test')
    done.append(dst)
    return copy(src, dst, overwrite)
  tf.io.gfile.copy = failing
serving_model.save_pattern(sys.argv[1])
"""


def _export(gcs, version, fail_after=-1):
  """Run the export in a child; return (exit code, the snapshots of the bucket's exports/ taken meanwhile)."""
  proc = subprocess.Popen([sys.executable, '-c', EXPORT.format(tests=str(REPO / 'tests')),
                           gcs.url('exports', version), str(fail_after)], cwd=REPO, env=gcs.env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  snapshots = []
  deadline = time.monotonic() + 300
  while proc.poll() is None and time.monotonic() < deadline:
    snapshots.append(set(gcs.ls('exports/')))
    time.sleep(0.02)
  out, err = proc.communicate(timeout=60)
  snapshots.append(set(gcs.ls('exports/')))
  return proc.returncode, snapshots, err


def test_a_version_appears_complete_or_not_at_all(gcs):
  code, snapshots, err = _export(gcs, '7')
  assert code == 0, err
  final = {n for n in snapshots[-1] if n.startswith('exports/7/')}
  assert {'exports/7/saved_model.pb', 'exports/7/assets.extra/colorizer.json'} <= final
  assert any('variables/variables.data' in n for n in final)
  assert not [n for n in snapshots[-1] if '.tmp-' in n]          # the staging copy is gone
  assert any(n.startswith('exports/.tmp-7/') for s in snapshots for n in s)   # ... and was used
  for snapshot in snapshots:   # whenever a loader could see the version (its saved_model.pb), all of it was there
    if 'exports/7/saved_model.pb' in snapshot:
      assert final <= snapshot, sorted(final - snapshot)


def test_a_failed_export_leaves_nothing_behind(gcs):
  code, snapshots, err = _export(gcs, '8', fail_after=2)
  assert code != 0 and 'connection reset by the test' in err
  assert any(n.startswith('exports/8/') for s in snapshots for n in s)   # the copy had begun
  assert not [n for n in snapshots[-1] if n.startswith(('exports/8/', 'exports/.tmp-8/'))]
  assert all('exports/8/saved_model.pb' not in s for s in snapshots)
