"""python -m pipeline.inspect DIR [--limit N]: counts, metadata and a few decoded records, without TensorFlow."""
import argparse
import json
import sys

import numpy as np

from pipeline import npreader, schema


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m pipeline.inspect', description=__doc__)
  parser.add_argument('data_dir', help='output directory of python -m pipeline.preprocess (local or gs://)')
  parser.add_argument('--limit', type=int, default=3, help='records to decode and show per split')
  args = parser.parse_args(argv)
  try:
    meta = schema.read_metadata(args.data_dir)
  except schema.SchemaError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  hist = meta.pop('ab_histogram')
  print(json.dumps(meta, indent=2, sort_keys=True))
  print(f'ab histogram: {int(np.sum(hist["counts"]))} training pixels in {hist["bins"]}x{hist["bins"]} cells '
        f'of {hist["bin"]} Lab units')
  for split in schema.SPLITS:
    files = npreader.shards(args.data_dir, split)
    print(f'\n{split}: {meta["counts"][split]} records in {len(files)} shards')
    for i, r in enumerate(npreader.records(args.data_dir, split)):
      if i >= args.limit:
        break
      top, left, h, w = r['box']
      content = r['lab'][top:top + h, left:left + w]
      print(f'  {r["key"]}\n    label {r["label"]} {r["synset"] or "-"}  source {r["size"][0]}x{r["size"][1]}  '
            f'box {r["box"].tolist()}  {r["record_bytes"]} bytes\n'
            f'    L {content[..., 0].mean():.1f}  a {content[..., 1].mean():+.1f}  b {content[..., 2].mean():+.1f}'
            f' (means)  embedding {r["embedding"].shape[0]}-d, argmax {int(np.argmax(r["embedding"]))}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
