r"""Two export graphs of one checkpoint side by side: end to end against the bare model, in one process.

  .venv/bin/python benchmarks/graphs.py OLD_VERSION_DIR NEW_VERSION_DIR [--rounds 21] [--canvas 256]

For grey JPEGs of 512 px and 2048x1536 (benchmarks/photos.py, as in benchmarks/serve.py) it checks how far the
two graphs' PNG outputs differ, then calls the bare model (NEW's `raw` on the L canvas), OLD's and NEW's
`serving_default` in turn, `--rounds` times, reversing the order every other round so that load from other processes hits all three
alike, and prints the medians and the median of the per-round ratios (end to end / bare, new / old). Use it to
compare a change of the export graph (export the same checkpoint with both versions of the code).
"""
import argparse
import io
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from photos import grey_jpeg  # noqa: E402
from serve import l_canvas, tf  # noqa: E402  (serve.py sets up the quiet TensorFlow import)

from PIL import Image  # noqa: E402

SIZES = ((512, 512), (1536, 2048))


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('old')
  p.add_argument('new')
  p.add_argument('--rounds', type=int, default=21)
  p.add_argument('--canvas', type=int, default=256, help="the models' canvas size (the records' image size)")
  args = p.parse_args()
  old, new = tf.saved_model.load(args.old), tf.saved_model.load(args.new)
  print(f'load average before: {os.getloadavg()[0]:.2f}', flush=True)
  for h, w in SIZES:
    jpeg = grey_jpeg(h, w)
    images = tf.constant([jpeg])
    a, b = (np.asarray(Image.open(io.BytesIO(m.signatures['colorize_png'](image_bytes=images)['image_bytes']
                                               .numpy()[0]))).astype(int) for m in (old, new))
    d = np.abs(a - b)
    print(f'{w}x{h}: PNG values differing {(d > 0).sum()} of {d.size}, max {d.max()}', flush=True)
    l = l_canvas(jpeg, args.canvas)
    calls = {'bare': lambda: new.signatures['raw'](l=l)['ab'].numpy(),
             'old': lambda: old.signatures['serving_default'](image_bytes=images)['image_bytes'].numpy(),
             'new': lambda: new.signatures['serving_default'](image_bytes=images)['image_bytes'].numpy()}
    for call in calls.values():   # warm up: the first calls trace and allocate
      call(), call()
    times = {k: [] for k in calls}
    for r in range(args.rounds):
      for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
        start = time.perf_counter()
        calls[k]()
        times[k].append(time.perf_counter() - start)
    t = {k: np.array(v) for k, v in times.items()}
    ms = {k: 1000 * np.median(v) for k, v in t.items()}
    print(f'{w}x{h}: bare {ms["bare"]:.0f} ms | old {ms["old"]:.0f} ms, {np.median(t["old"] / t["bare"]):.2f} | '
          f'new {ms["new"]:.0f} ms, {np.median(t["new"] / t["bare"]):.2f} | new / old '
          f'{np.median(t["new"] / t["old"]):.2f} | load average {os.getloadavg()[0]:.2f}', flush=True)


if __name__ == '__main__':
  main()
