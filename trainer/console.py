"""Clean terminal output for the trainer's entry points (TensorFlow is imported quietly by pipeline.quiet)."""
import logging as std_logging
import os

import tensorflow as tf
from absl import logging

_TF_ROOT = os.path.dirname(tf.__file__)


def quiet_tensorflow_info():
  """Drop TensorFlow's own INFO lines (checkpoint sharding, SavedModel signatures, assets); keep ours and warnings.

  TensorFlow logs them through absl and through its 'tensorflow' logger, so both are filtered.
  """
  tf.get_logger().setLevel(std_logging.WARNING)
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno > std_logging.INFO or not record.pathname.startswith(_TF_ROOT))
