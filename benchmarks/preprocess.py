r"""Preprocessing benchmark: the Beam job against the bare embedder, on the same images, in one run.

  .venv/bin/python benchmarks/preprocess.py [--images DIR] [--limit N] [--embedder NAME] [--weights W]
      [--precision float32|bfloat16] [--batch-size 32]

Prints: pipeline images/s (whole job, and without the one-off model load that RunInference reports), bare
embedder images/s (same model, batch and precision, inputs already in memory; median of repeats), their ratio,
record bytes against the source files' bytes, and the stored Lab's quantisation error. ARCHITECTURE.md's targets:
ratio >= 0.9 for Inception-ResNet-v2 (>= 0.5 for MobileNetV2), bytes <= 1.0x, L error <= 0.2, ab <= 0.5.
"""
import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline import quiet

tf = quiet.tensorflow()
import numpy as np

from pipeline import colour, decode, embed_handler, embedder, letterbox, preprocess, schema

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared')


def bare_embedder(canvases, args):
  model = embedder.build(args.embedder, args.weights, args.precision)
  call = embed_handler.stored_l_embedder(model, 256)  # exactly what the job's RunInference calls
  batches = [canvases[i:i + args.batch_size] for i in range(0, len(canvases), args.batch_size)]
  call(batches[0]).numpy()  # trace
  rates = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for b in batches:
      call(b).numpy()
    rates.append(len(canvases) / (time.perf_counter() - start))
  return statistics.median(rates), rates


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--images', default=os.path.join(SHARED, 'data', 'imagenet-sample'))
  p.add_argument('--limit', type=int, default=200)
  p.add_argument('--embedder', default='mobilenet_v2', choices=list(embedder.SPECS))
  p.add_argument('--weights', default=None, help='default: the shared MobileNetV2 file, else random')
  p.add_argument('--precision', default='float32', choices=list(embedder.PRECISIONS))
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--beam-args', default='--runner DirectRunner', help='Beam options for the job')
  args = p.parse_args()
  shared_weights = os.path.join(SHARED, 'weights', 'mobilenet_v2_1.0_224_imagenet.weights.h5')
  if args.weights is None:
    args.weights = shared_weights if args.embedder == 'mobilenet_v2' and os.path.exists(shared_weights) \
        else 'random'
  files = sorted(glob.glob(os.path.join(args.images, '*')))[:args.limit]
  if not files:
    sys.exit(f'no images in {args.images}')
  work = tempfile.mkdtemp(prefix='bench-preprocess-')
  src = os.path.join(work, 'in')
  os.makedirs(src)
  for f in files:
    os.symlink(os.path.abspath(f), os.path.join(src, os.path.basename(f)))
  print(f'{len(files)} images from {args.images}; {args.embedder} ({os.path.basename(args.weights)}, '
        f'{args.precision}), batch {args.batch_size}; {os.cpu_count()} CPUs', flush=True)

  # Reference: unquantised letterboxed Lab, and the L canvases the bare embedder gets.
  lab_ref, canvases = {}, []
  for f in files:
    try:
      rgb, _ = decode.decode(open(f, 'rb').read(), min_side=256)
    except decode.DecodeError:
      continue
    canvas, _ = letterbox.letterbox(rgb, 256)
    lab = colour.rgb_to_lab(canvas / 255.0)
    lab_ref[os.path.basename(f)] = lab.numpy()
    canvases.append(schema.quantize_lab(lab)[..., 0].numpy())
  canvases = np.stack(canvases)

  bare, bare_runs = bare_embedder(canvases, args)

  def job(names, out):
    folder = os.path.join(work, f'in-{len(names)}')
    os.makedirs(folder, exist_ok=True)
    for n in names:
      os.symlink(os.path.realpath(os.path.join(src, n)), os.path.join(folder, n))
    argv = ['bench', '--input', folder, '--output', out, '--embedder', args.embedder, '--embedder-weights',
            args.weights, '--embedder-precision', args.precision, '--embedder-batch-size', str(args.batch_size),
            '--num-shards', '4'] + args.beam_args.split()
    start = time.perf_counter()
    summary = preprocess.run(argv)
    return summary, time.perf_counter() - start

  # Two runs, a third of the images and all of them: the difference is the rate a long job sustains, with
  # start-up, model load and XLA compilation (fixed costs that 1.28 M images amortise) cancelled out.
  names = sorted(os.listdir(src))
  small, small_s = job(names[:len(names) // 3], os.path.join(work, 'out-small'))
  summary, wall = job(names, os.path.join(work, 'out'))
  out = os.path.join(work, 'out')
  written = sum(summary['written'].values())
  pipeline_rate = written / wall
  marginal_rate = (written - sum(small['written'].values())) / (wall - small_s)
  # Storage: bytes and quantisation error of what was written.
  meta = schema.read_metadata(out)
  record_bytes, source_bytes, err_l, err_ab = 0, 0, [], []
  for split in schema.SPLITS:
    for path in schema.list_shards(out, split):
      for raw in tf.data.TFRecordDataset(path).batch(64):
        r = schema.parse_batch(raw, meta)
        for key, lab, n in zip(r['key'].numpy(), r['lab'].numpy(), tf.strings.length(raw).numpy()):
          key = key.decode()
          record_bytes += int(n)
          source_bytes += os.path.getsize(os.path.realpath(key))
          diff = np.abs(lab - lab_ref[os.path.basename(key)])
          err_l.append(diff[..., 0].max())
          err_ab.append(diff[..., 1:].max())

  print(f'pipeline       {marginal_rate:7.2f} images/s  sustained (all {written} images minus the first third; '
        f'whole run {pipeline_rate:.2f} images/s in {wall:.1f} s)')
  print(f'bare embedder  {bare:7.2f} images/s  (median of {", ".join(f"{r:.2f}" for r in bare_runs)})')
  print(f'ratio          {marginal_rate / bare:7.2f}  (whole run: {pipeline_rate / bare:.2f})')
  print(f'record bytes   {record_bytes / source_bytes:7.2f} x the source files ({record_bytes / written / 1e3:.1f} kB '
        f'vs {source_bytes / written / 1e3:.1f} kB per image)')
  print(f'Lab error      L max {max(err_l):.3f}, a/b max {max(err_ab):.3f} (stored vs unquantised)')


if __name__ == '__main__':
  main()
