"""RunInference ModelHandler for the frozen embedder.

Beam's own TensorFlow handler imports tensorflow_hub and cannot load Keras 3 models, so this small one builds
the embedder with pipeline.embedder.build once per worker (Beam shares it across the worker's threads);
RunInference supplies batching, metrics and the dead-letter queue.
"""
import logging
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

# RunInference's optional ModelManager import fails without torch, after which every model load logs to the root
# logger that memory usage is unavailable: nothing a user can act on.
logging.getLogger().addFilter(lambda r: 'Resource module is not available' not in r.getMessage())


class EmbedderHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
  """Examples are uint8 L canvases [S, S] as stored (L * 255/100); inferences are float32 [dim]."""

  def __init__(self, name, weights, precision='float32', image_size=256, batch_size=32):
    # Fixed batches: BatchElements otherwise starts at 1 and grows by timing, and small batches waste the
    # model's throughput (bfloat16 on AMX most of all). Only a bundle's last batch is smaller.
    super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
    self._name, self._weights, self._precision = name, weights, precision
    self._image_size = image_size

  def load_model(self):
    from pipeline import quiet
    quiet.tensorflow()  # may be the worker's first TF import: keep its notices off the terminal
    from pipeline import embedder
    model = embedder.build(self._name, self._weights, self._precision, self._image_size)
    return stored_l_embedder(model, self._image_size)

  def run_inference(self, batch: Sequence[np.ndarray], model, inference_args: Optional[dict] = None
                    ) -> Iterable[PredictionResult]:
    embeddings = model(np.stack(batch)).numpy()
    return [PredictionResult(x, e) for x, e in zip(batch, embeddings)]

  def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
    return sum(x.nbytes for x in batch)  # the default pickles the whole batch just to measure it

  def get_metrics_namespace(self) -> str:
    return 'colorizer_embedder'


def stored_l_embedder(model, image_size):
  """A traced call of the embedder on L canvases as stored (uint8 [B, S, S], L * schema.L_SCALE).

  One graph for every batch size: no retracing when a bundle ends with a short batch.
  """
  from pipeline import quiet, schema
  tf = quiet.tensorflow()
  return tf.function(lambda q: model(tf.cast(q, tf.float32)[..., None] / schema.L_SCALE, training=False),
                     input_signature=[tf.TensorSpec([None, image_size, image_size], tf.uint8)],
                     autograph=False)
