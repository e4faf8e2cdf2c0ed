"""The unet: its encoder is the embedder's classifier trunk (frozen as built; the trainer fine-tunes it from
--fine-tune-from), with the same weights found through the records' metadata (checked by sha256), recorded in
run.json, restored from checkpoints and exported."""
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline import embedder, schema
from trainer import config, data, loop, model as model_lib, task

SIZE = 64


@pytest.fixture(scope='module')
def records(make_records):
  return make_records('--image-size', str(SIZE), '--num-shards', '1', '--embedder', 'mobilenet_v2',
                      '--embedder-weights', 'random', '--runner', 'DirectRunner')


def _config(records, job_dir, **kw):
  return config.Config(data=str(records), job_dir=str(job_dir), **dict(
      dict(epochs=1, steps_per_epoch=2, batch_size=4, width=0.25, strategy='one_device', val_images=0,
           sample_images=0, export=False), **kw))


def test_the_encoder_is_the_classifier_trunk_with_its_imagenet_weights(mobilenet_weights):
  """At the classifier's own input size, its head on the encoder's last level gives the embedder's softmax."""
  weights = str(mobilenet_weights)
  encoder = embedder.pyramid('mobilenet_v2', weights, 224)
  classifier = embedder._classifier(embedder.SPECS['mobilenet_v2'], weights)
  l = tf.constant(np.random.default_rng(0).uniform(0, 100, (2, 224, 224, 1)), tf.float32)
  levels = encoder(l)
  assert [tuple(x.shape[1:3]) for x in levels] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
  head = classifier.get_layer('predictions')
  probabilities = head(tf.reduce_mean(levels[-1], axis=[1, 2]))
  np.testing.assert_allclose(probabilities, embedder.build('mobilenet_v2', weights, image_size=224)(l), atol=1e-5)
  assert not encoder.trainable_weights and len(encoder.non_trainable_weights) > 200


def test_inception_resnet_levels_are_resized_to_the_strides():
  """Its 'valid' convolutions leave stages a few pixels short: every level is still exactly S / stride."""
  encoder = embedder.pyramid('inception_resnet_v2', 'random', 128)
  assert [tuple(x.shape[1:]) for x in encoder.outputs] == [
      (64, 64, 32), (32, 32, 192), (16, 16, 320), (8, 8, 1088), (4, 4, 1536)]


def test_built_without_fine_tuning_only_the_decoder_trains():
  model = model_lib.build('unet', 'classification', SIZE, width=0.25, encoder_weights='random')
  encoder = model.get_layer('encoder_mobilenet_v2')
  assert not encoder.trainable and all(v.trainable for v in model.trainable_variables)
  assert {id(v) for v in encoder.weights}.isdisjoint(id(v) for v in model.trainable_variables)
  outputs = model({'l': tf.zeros([2, SIZE, SIZE, 1]), 'embedding': tf.fill([2, 1000], 1e-3)})
  assert outputs.shape == (2, SIZE // 4, SIZE // 4, 261)
  with pytest.raises(ValueError, match='multiple of 32 for unet, got 72'):
    model_lib.build('unet', 'mse', 72)
  # One more decoder level, from the encoder's first stage: logits at S/2.
  finer = model_lib.build('unet', 'classification', SIZE, width=0.25, output_stride=2)
  assert finer.output.shape[1:3] == (SIZE // 2, SIZE // 2)
  with pytest.raises(ValueError, match='output_stride 2: the unet takes 2 or 4, the other models 4'):
    model_lib.build('fusion', 'classification', SIZE, output_stride=2)


def test_default_training_finds_the_encoder_weights_through_the_records(records, mobilenet_weights, tmp_path):
  """Records made with a weights file: the unet's encoder loads that file by itself, checked by its sha256."""
  data_dir = tmp_path / 'data'
  shutil.copytree(records, data_dir)
  weights = tmp_path / 'mobilenet_v2.weights.h5'
  shutil.copy(mobilenet_weights, weights)
  meta = json.loads((data_dir / schema.METADATA_FILE).read_text())
  meta['embedder'] = embedder.describe('mobilenet_v2', str(weights), 'float32')
  (data_dir / schema.METADATA_FILE).write_text(json.dumps(meta))

  result = task.train(_config(data_dir, tmp_path / 'job'))
  assert result['step'] == 2
  run = json.loads((tmp_path / 'job' / 'checkpoints' / 'run.json').read_text())
  assert run['config']['model'] == 'unet' and run['encoder'] == {
      'name': 'mobilenet_v2', 'weights': str(weights), 'weights_sha256': meta['embedder']['weights_sha256']}
  # The frozen ImageNet trunk is in the checkpoint as loaded, untouched by training.
  trainer = loop.Trainer(_config(data_dir, '/unused'), data.load_metadata(str(data_dir)),
                         tf.distribute.get_strategy(), total_steps=1)
  loaded = [v.numpy() for v in trainer.model.get_layer('encoder_mobilenet_v2').weights]
  trainer.model.get_layer('encoder_mobilenet_v2').set_weights([np.zeros_like(w) for w in loaded])
  ckpt = tf.train.latest_checkpoint(str(tmp_path / 'job' / 'checkpoints'))
  trainer.checkpoint.restore(ckpt).assert_existing_objects_matched()
  for a, b in zip(loaded, trainer.model.get_layer('encoder_mobilenet_v2').weights):
    np.testing.assert_array_equal(a, b.numpy())

  # Another file under the recorded path is refused, naming it; nothing falls back.
  with open(weights, 'ab') as f:
    f.write(b'\0')
  with pytest.raises(embedder.EmbedderError, match=f'{weights} has sha256 .* restore the original file'):
    task.train(_config(data_dir, tmp_path / 'job2'))


def test_explicit_encoder_weights_are_recorded_and_a_resume_with_others_is_refused(records, tmp_path):
  from trainer import jobdir
  task.train(_config(records, tmp_path / 'job', encoder_weights='random', steps_per_epoch=1))
  run = json.loads((tmp_path / 'job' / 'checkpoints' / 'run.json').read_text())
  assert run['encoder'] == {'name': 'mobilenet_v2', 'weights': 'random'}
  with pytest.raises(jobdir.RunError, match=r"encoder: .*'random'.* there, .*'inception_resnet_v2'"):
    task.train(_config(records, tmp_path / 'job', encoder='inception_resnet_v2', encoder_weights='random'))
  keras.backend.clear_session()
