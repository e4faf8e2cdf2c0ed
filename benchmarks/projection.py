r"""What GPUs would ask of the input pipeline: GFLOP per training image and the cores that feed them.

  python benchmarks/projection.py --input-rate 1263 [--utilisation 0.35] [--gpus 8]

GFLOP per training image = 3 x the forward pass's multiply-adds x 2 (forward, and a backward pass of about twice
the forward), counted from the Keras model's Conv2D layers (everything else is a rounding error). Images/s a GPU
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


def forward_macs(model):
  macs = 0
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2D):
      _, h, w, c_out = layer.output.shape
      kh, kw = layer.kernel_size
      macs += h * w * kh * kw * layer.input.shape[-1] * c_out
  return macs


def main(argv):
  del argv
  rate = FLAGS['input-rate'].value
  rows = []
  for name in model_lib.MODELS:
    for size in (128, 256):
      gflop = 6 * forward_macs(model_lib.build(name, 'classification', size, 1000)) / 1e9
      rows.append((name, size, gflop))
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
