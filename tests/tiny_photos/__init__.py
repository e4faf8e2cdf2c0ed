"""A tiny TFDS image dataset for the tests, prepared locally (an importable package, as TFDS and Beam want)."""
import numpy as np
import tensorflow_datasets as tfds


class TinyPhotos(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(), 'label': tfds.features.ClassLabel(names=['n01440764', 'n01443537'])}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    for i in range(5):
      yield i, {'image': np.full((20 + i, 30, 3), 40 * i, np.uint8), 'label': i % 2}
