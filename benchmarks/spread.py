r"""How far does the hints' fixed spread alone colour a photo? (trainer/propagate.py)

  .venv/bin/python benchmarks/spread.py [--images DIR] [--exclude DIR] [--limit N] [--hints 10] \
      [--sigma-xy 0.1 0.2 0.3] [--sigma-l 5 10 15] [--half 0.01 0.05 0.1]

For each photo (colour ones only) on the 128 px canvas the models are studied at: `--hints` simulated hints
(serving.user_hints.simulate, the simulated user of serving.evaluate), painted as the export paints a user's
(trainer.hints.from_user), then the ab the output prior would be told (trainer.model.told at the classification
head's S/4), taken at its certainty (ab x certainty: grey where the spread is unsure), upsampled as predict_ab
does. Prints mean PSNR against the truth over the photo's part of the canvas, and ΔCF, beside the grey baseline,
for every combination of the three parameters given (defaults: the shipped ones). No network: this isolates
the spread. To choose the parameters without looking at the val photos, run it on the others:
--images ../shared/data/imagenet-sample --exclude WORK/val-photos (benchmarks/quality.py makes that folder).
"""
import argparse
import itertools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline import quiet  # noqa: E402

tf = quiet.tensorflow()

from PIL import Image  # noqa: E402

from pipeline import colour, letterbox  # noqa: E402
from serving import user_hints as serving_hints  # noqa: E402
from trainer import hints, model, propagate  # noqa: E402

SIZE = 128


def colourfulness(rgb):
  """Hasler and Süsstrunk's colourfulness of uint8 RGB pixels [P, 3] (as serving.evaluate reports it)."""
  r, g, b = (rgb[:, i].astype(float) for i in range(3))
  rg, yb = r - g, 0.5 * (r + g) - b
  return np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())


def photos(args):
  skip = set(os.listdir(args.exclude)) if args.exclude else set()
  names = sorted(n for n in os.listdir(args.images) if n not in skip)
  rng = np.random.default_rng(args.seed)
  for name in names:
    with Image.open(os.path.join(args.images, name)) as img:
      truth = np.asarray(img.convert('RGB'))
    if np.abs(truth.astype(int) - truth[..., :1]).max() < 3:
      continue   # greyscale: nothing to measure (serving.evaluate skips them too)
    yield truth, serving_hints.simulate(truth, args.hints, rng)
    args.limit -= 1
    if not args.limit:
      return


def canvas(truth, hint_list):
  rgb, box = letterbox.letterbox(tf.constant(truth), SIZE)
  lab = colour.rgb_to_lab(rgb / 255.0)[None]
  points = [[[h.x, h.y] for h in hint_list]]
  colours = [[list(h.rgb) for h in hint_list]]
  radius = [[h.radius for h in hint_list]]
  return lab, box, hints.from_user(SIZE, box[None], points, colours, radius)


def measure(cases):
  psnr, dcf = [], []
  for lab, box, hint_map in cases:
    ab, certainty = model.told(hint_map, lab[..., :1], SIZE, SIZE // 4)
    ab = tf.image.resize(ab * certainty * model.AB_SCALE, [SIZE, SIZE])
    t, l, h, w = box.numpy()
    got = colour.lab_to_rgb(tf.concat([lab[..., :1], ab], -1))[0, t:t + h, l:l + w].numpy()
    want = colour.lab_to_rgb(lab)[0, t:t + h, l:l + w].numpy()
    got, want = (np.round(x * 255).reshape(-1, 3) for x in (got, want))
    psnr.append(10 * np.log10(255.0 ** 2 / np.mean((got - want) ** 2)))
    dcf.append(abs(colourfulness(got) - colourfulness(want)))
  return np.mean(psnr), np.mean(dcf)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--images', default=os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data',
                                                  'imagenet-sample'))
  p.add_argument('--exclude', help='a folder whose file names are left out (e.g. the val photos)')
  p.add_argument('--limit', type=int, default=200)
  p.add_argument('--hints', type=int, default=10)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--sigma-xy', type=float, nargs='+', default=[propagate.SIGMA_XY])
  p.add_argument('--sigma-l', type=float, nargs='+', default=[propagate.SIGMA_L])
  p.add_argument('--half', type=float, nargs='+', default=[propagate.HALF])
  args = p.parse_args()
  cases = [canvas(truth, hint_list) for truth, hint_list in photos(args)]
  print(f'{len(cases)} colour photos, {args.hints} simulated hints each, {SIZE} px canvas')
  print('| σ_xy | σ_L | half | PSNR dB | ΔCF |\n|---|---|---|---|---|')
  none = [(lab, box, tf.zeros_like(m)) for lab, box, m in cases]
  print('| grey baseline | | | {:.2f} | {:.2f} |'.format(*measure(none)))
  for propagate.SIGMA_XY, propagate.SIGMA_L, propagate.HALF in itertools.product(args.sigma_xy, args.sigma_l,
                                                                                 args.half):
    print(f'| {propagate.SIGMA_XY} | {propagate.SIGMA_L} | {propagate.HALF} | ' + '{:.2f} | {:.2f} |'.format(
        *measure(cases)), flush=True)


if __name__ == '__main__':
  main()
