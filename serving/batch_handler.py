"""RunInference ModelHandler for an exported colorizer: the colouring job's model (serving/batch.py).

Beam's own TensorFlow handler cannot load Keras 3 models (pipeline/embed_handler.py says why), and an export is
not a Keras model anyway but a SavedModel whose signatures take encoded images. So this handler loads it with the
one loader every front end uses, serving.exported.Colorizer, once per worker (RunInference shares it across the
worker's threads), and calls it as the CLI does (Colorizer.colorize: serving_default or colorize_png, the hints
signatures when there are hints, the *_strength ones for --strength; a failing batch retried image by image): the
job's bytes are the CLI's.
"""
from typing import Any, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipeline import embed_handler  # noqa: F401  (its filter of RunInference's memory notice, for every handler)


class ColorizerHandler(ModelHandler[tuple, PredictionResult, Any]):
  """Examples are whole batches: (encoded images, per image a list of user_hints.Hint, or None for no hints);
  inferences are, per image, the encoded colour image (bytes) or the serving.errors kind of its failure.

  The job forms the batches itself, within a work unit and in key order (serving/batch_job.py), so that which
  images share a model call is the same on every run and every runner; RunInference passes them on one at a time.
  """

  def __init__(self, model_path, fmt, strength=None):
    super().__init__(min_batch_size=1, max_batch_size=1)
    self._model_path, self._fmt, self._strength = model_path, fmt, strength

  def load_model(self):
    from pipeline import quiet
    quiet.tensorflow()  # may be the worker's first TF import: keep its notices off the terminal
    from serving import exported
    return exported.Colorizer(self._model_path)

  def run_inference(self, batch: Sequence[tuple], model, inference_args: Optional[dict] = None
                    ) -> Iterable[PredictionResult]:
    from serving import errors
    results = []
    for images, hints in batch:
      try:
        inference = model.colorize(list(images), self._fmt, hints, self._strength)
      except Exception as e:  # the unit must still account for every input: each becomes a failure line
        inference = [errors.ModelFailed(f'the model failed on its batch: {type(e).__name__}: {e}'[:500])] * len(
            images)
      results.append(PredictionResult((images, hints), inference))
    return results

  def get_num_bytes(self, batch: Sequence[tuple]) -> int:
    return sum(len(image) for images, _ in batch for image in images)

  def get_metrics_namespace(self) -> str:
    return 'colorizer_model'
