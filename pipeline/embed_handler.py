"""RunInference ModelHandler for the frozen embedder.

Beam's own TensorFlow handler imports tensorflow_hub and cannot load Keras 3 models, so this small one builds
the embedder with pipeline.embedder.build once per worker (Beam shares it across the worker's threads);
RunInference supplies the model's life cycle and metrics.
"""
import logging
from typing import Any, Iterable, NamedTuple, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

# RunInference's optional ModelManager import fails without torch, after which every model load logs to the root
# logger that memory usage is unavailable: nothing a user can act on.
logging.getLogger().addFilter(lambda r: 'Resource module is not available' not in r.getMessage())


class EmbeddingFailed(NamedTuple):
  """The inference of a batch whose embedder call raised: its records become 'embedding' failures."""
  detail: str


class EmbedderHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
  """Examples are whole batches: uint8 L canvases [B, S, S] as stored (L * 255/100), B >= 0; inferences are
  float32 [B, dim], or EmbeddingFailed.

  The job forms the batches itself, within a work unit and in key order (pipeline/units.py), so that which images
  share an embedder call, and hence every float the model returns, is the same on every run and every runner
  (a resumed run included); RunInference passes them on one at a time.
  """

  def __init__(self, name, weights, precision='float32', image_size=256):
    super().__init__(min_batch_size=1, max_batch_size=1)
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
    results = []
    for canvases in batch:
      try:
        inference = model(canvases).numpy() if len(canvases) else np.zeros((0, 0), np.float32)
      except Exception as e:  # the unit must still account for every input: its records become failures
        inference = EmbeddingFailed(f'{type(e).__name__}: {e}'[:500])
      results.append(PredictionResult(canvases, inference))
    return results

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
