r"""The colour-strength front of one export: accuracy against colour from the palest setting to the most vivid.

  .venv/bin/python benchmarks/strength.py --model EXPORT_DIR --images VAL_PHOTOS [--work DIR]
      [--strengths 0,0.1,0.2,0.25,0.3,0.4,0.5,0.75,1] [--protocol full|published]

Evaluates the export with `serving.evaluate --strength S` at each strength on the same photos (the quality study's
val photos: learning-curve-output/val-photos or quality-output/val-photos), then writes WORK/strength.md (the table,
the default the rule picks, the goals) and WORK/front.png (PSNR against colourfulness, a point per strength).

The rule for the default: the most colourful setting within 0.5 dB of the best PSNR on the front (a user who wants
more colour moves the slider; the default gives up little accuracy for the colour it shows). Stages whose report
exists are skipped. It imports no TensorFlow.
"""
import argparse
import json
import os
import sys

import plot
import quality  # the study's runner (benchmarks/quality.py)

GOAL_PALE = 0.5      # a setting at or above grey's PSNR with at least half the truth's colourfulness
GOAL_VIVID = 0.15    # a setting within 15 % of the truth's colourfulness
RULE_DB = 0.5


def evaluate(args, strength):
  report = os.path.join(args.work, f'strength-{strength:g}')
  if not os.path.exists(os.path.join(report, 'summary.json')):
    quality.log(f'strength {strength:g}: evaluating')
    quality.run(args, ['serving.evaluate', '--model', args.model, '--images', args.images, '--report', report,
                       '--sample', '0', '--strength', str(strength), '--protocol', args.protocol],
                report + '.log')
  with open(os.path.join(report, 'summary.json')) as f:
    return json.load(f)


def rows_of(summaries):
  rows = []
  for s, summary in summaries:
    m = summary['metrics']['model']
    rows.append(dict(strength=s, psnr=m['psnr'], auc=m['auc'], auc_rebalanced=m['auc_rebalanced'],
                     cf=m['cf_pred'] / m['cf_true'], delta_cf=m['delta_cf']))
  return rows


def choose(rows):
  """The rule: the most colourful row within RULE_DB of the best PSNR."""
  best = max(r['psnr'] for r in rows)
  return max((r for r in rows if r['psnr'] >= best - RULE_DB), key=lambda r: r['cf'])


def report(args, rows, grey, n):
  default = choose(rows)
  pale = [r for r in rows if r['psnr'] >= grey['psnr'] and r['cf'] >= GOAL_PALE]
  vivid = [r for r in rows if abs(r['cf'] - 1.0) <= GOAL_VIVID]
  lines = [f'# Colour-strength front: {args.model}', '',
           f'{n} val photos in colour, protocol {args.protocol}; the grey baseline: PSNR {grey["psnr"]:.2f} dB, '
           f'AuC {grey["auc"]:.4f}, rebalanced AuC {grey["auc_rebalanced"]:.4f}.', '',
           '| strength | PSNR dB | AuC | AuC rebal. | CF / truth | ΔCF |', '|---|---|---|---|---|---|']
  for r in rows:
    mark = ' (the rule\'s default)' if r is default else ''
    lines.append(f'| {r["strength"]:g}{mark} | {r["psnr"]:.2f} | {r["auc"]:.4f} | {r["auc_rebalanced"]:.4f} | '
                 f'{r["cf"]:.1%} | {r["delta_cf"]:.2f} |')
  verdict = lambda found: ('met by ' + ', '.join(f'{r["strength"]:g}' for r in found)) if found else 'missed'
  lines += ['', f'Rule: the most colourful setting within {RULE_DB} dB of the best PSNR: strength '
                f'{default["strength"]:g} ({default["psnr"]:.2f} dB, {default["cf"]:.1%} of the truth\'s colour).',
            f'Goal, at or above grey\'s PSNR with at least half the truth\'s colourfulness: {verdict(pale)}.',
            f'Goal, within 15 % of the truth\'s colourfulness: {verdict(vivid)}.']
  with open(os.path.join(args.work, 'strength.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  plot.chart(os.path.join(args.work, 'front.png'), 'Colour strength: accuracy against colour',
             'colourfulness, % of the truth\'s', 'PSNR (dB)',
             [plot.Series('the export at strength s', [(100 * r['cf'], r['psnr'], f'{r["strength"]:g}')
                                                       for r in rows])],
             hlines=[(grey['psnr'], 'grey baseline (ab = 0)')])
  print('\n'.join(lines))


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', required=True, help='export directory')
  p.add_argument('--images', required=True, help='the colour photos to evaluate on')
  p.add_argument('--work', default=os.path.join(quality.ROOT, 'strength-output'))
  p.add_argument('--strengths', default='0,0.1,0.2,0.25,0.3,0.4,0.5,0.75,1')
  p.add_argument('--protocol', choices=('full', 'published'), default='full')
  args = p.parse_args()
  for path in (args.model, args.images):
    if not os.path.exists(path):
      sys.exit(f'{path} does not exist')
  args.model, args.images = os.path.abspath(args.model), os.path.abspath(args.images)
  os.makedirs(args.work, exist_ok=True)
  summaries = [(float(s), evaluate(args, float(s))) for s in args.strengths.split(',')]
  first = summaries[0][1]
  report(args, rows_of(summaries), first['metrics']['grey_baseline'], first['images'])


if __name__ == '__main__':
  main()
