"""Import TensorFlow without its start-up notices, for clean command-line output.

TensorFlow's C++ runtime prints oneDNN and CUDA notices to stderr at import, before absl logging is
initialised, so TF_CPP_MIN_LOG_LEVEL cannot silence them. Entry points call `tensorflow()` before anything
else imports TF: stderr is captured around the import and device discovery and every line that is not a known notice is passed on.
"""
import logging
import os
import re
import sys
import tempfile

_NOTICES = re.compile(
    r'All log messages before absl::InitializeLog|oneDNN custom operations are on|Could not find cuda drivers'
    r'|This TensorFlow binary is optimized|rebuild TensorFlow with the appropriate compiler flags'
    r'|Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc|TF-TRT Warning|cpu_feature_guard|failed call to cuInit')

# gcsfs and fsspec log INFO lines a user cannot act on ("AdaptiveReadaheadCache enabled ..." from fsspec.caching
# for every gs:// file opened, "gcsfs experimental features enabled ..." at import); absl's handler shows INFO, so
# they would reach the terminal. Every entry point imports this module; their warnings and errors still show.
for _name in ('gcsfs', 'fsspec'):
  logging.getLogger(_name).setLevel(logging.WARNING)


def tensorflow():
  """`import tensorflow` with its notices filtered out; returns the module."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if 'tensorflow' in sys.modules:
    return sys.modules['tensorflow']
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf
      tf.config.list_physical_devices()  # device discovery prints its CUDA notices here, not later
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      for line in captured.read().decode(errors='replace').splitlines():
        if line.strip() and not _NOTICES.search(line):
          print(line, file=sys.stderr)
  return tf
