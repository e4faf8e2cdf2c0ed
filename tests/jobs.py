"""A job's command line run as a user runs it, in a process of its own, and killed with SIGKILL mid-run
(tests/test_resume.py: the preprocessing job; tests/test_batch.py: the colouring job)."""
import os
import signal
import subprocess
import time

from paths import REPO
from pipeline import resume


def env():
  return dict(os.environ, PYTHONPATH=str(REPO))


def start(cmd, cwd):
  """The command in a session of its own, so that kill_when ends its workers too."""
  return subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)


def run(cmd, cwd, timeout=300):
  return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def kill_when(proc, ready, timeout=240):
  """SIGKILL the job's process group as soon as ready() holds; False if the job ended first."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if ready():
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.02)
  os.killpg(proc.pid, signal.SIGKILL)
  raise AssertionError('kill point never reached')


def committed(out):
  """The work units a job has committed in the output folder `out` (a pathlib.Path)."""
  folder = out / resume.WORK / 'units'
  return len(list(folder.glob('*.json'))) if folder.is_dir() else 0
