r"""What GPUs would ask of the input pipeline: GFLOP per training image and the cores that feed them.

  python benchmarks/projection.py --input-rate 1263 [--utilisation 0.35] [--gpus 8]

GFLOP per training image = 2 x the multiply-adds of the convolutions and dense layers, x 3 for trainable ones
(forward, and a backward pass of about twice the forward), x 1 for the unet's frozen encoder (forward only;
x 3 too while it is fine-tuned: trainer.task's default from a fifth of the run); everything else is a rounding
error. The unet is counted with its default MobileNetV2 encoder. Images/s a GPU
would train = utilisation x its dense bf16 peak / GFLOP per image. Cores = those images/s x --gpus / --input-rate
(records/s one core of the input pipeline delivers: benchmarks/train.py --input-only under taskset -c 0).
No GPU was used: these are projections from datasheet peaks.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline import quiet

tf = quiet.tensorflow()

import keras
from absl import app, flags

from trainer import model as model_lib

flags.DEFINE_float('input-rate', None, 'Measured records/s of one core of the input pipeline.', required=True)
flags.DEFINE_float('utilisation', 0.35, 'Share of the GPU\'s dense bf16 peak the training step reaches.')
flags.DEFINE_integer('gpus', 8, 'GPUs per host.')
FLAGS = flags.FLAGS
PEAK_BF16_TFLOPS = {'A100': 312.0, 'H100 SXM': 989.0}   # dense, NVIDIA datasheets


def _macs(layer):
  """Multiply-adds of one convolution or dense layer's forward pass (0 for anything else)."""
  if isinstance(layer, keras.layers.DepthwiseConv2D):
    _, h, w, c = layer.output.shape
    return h * w * layer.kernel_size[0] * layer.kernel_size[1] * c
  if isinstance(layer, keras.layers.Conv2D):
    _, h, w, c_out = layer.output.shape
    return h * w * layer.kernel_size[0] * layer.kernel_size[1] * layer.input.shape[-1] * c_out
  if isinstance(layer, keras.layers.Dense):
    return layer.input.shape[-1] * layer.units
  return 0


def training_gflop(model):
  """GFLOP per training image: 2 FLOP per multiply-add; a trainable layer costs its forward pass and a backward
  pass of about twice that; a frozen one (the unet's pretrained encoder, below every trainable layer) only its
  forward pass: nothing needs its gradients. Nested models (the unet's encoder wraps the classifier) are walked
  down to their layers; a layer trains only if it and every model around it are trainable."""
  def macs(layer, trainable):
    if isinstance(layer, keras.Model):
      return sum(macs(inner, trainable and layer.trainable) for inner in layer.layers)
    return _macs(layer) * (3 if trainable and layer.trainable else 1)
  return 2 * macs(model, True) / 1e9


def main(argv):
  del argv
  rate = FLAGS['input-rate'].value
  rows = []
  # The unet twice: its encoder frozen (the first fifth of a default run), then fine-tuned (the rest).
  variants = [(name, name, {}) for name in model_lib.MODELS] + [
      ('unet, encoder fine-tuned', 'unet', {'fine_tune_encoder': True})]
  for label, name, kw in variants:
    for size in (128, 256):
      rows.append((label, size, training_gflop(model_lib.build(name, 'classification', size, 1000, **kw))))
  peaks = ' | '.join(f'{g} img/s per GPU | cores for {FLAGS.gpus}' for g in PEAK_BF16_TFLOPS)
  print(f'| model | px | GFLOP per training image | {peaks} |')
  print('|---|---|---|' + '---|---|' * len(PEAK_BF16_TFLOPS))
  for name, size, gflop in rows:
    cells = []
    for peak in PEAK_BF16_TFLOPS.values():
      per_gpu = FLAGS.utilisation * peak * 1e3 / gflop
      cells += [f'{per_gpu:,.0f}', f'{per_gpu * FLAGS.gpus / rate:.0f}']
    print(f'| {name} | {size} | {gflop:.1f} | ' + ' | '.join(cells) + ' |')
  print(f'\nutilisation {FLAGS.utilisation:.0%} of the dense bf16 peak; input {rate:.0f} '
        'records/s per core')


if __name__ == '__main__':
  app.run(main)
