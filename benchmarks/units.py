r"""Memory of forming the job's work units alone, at ImageNet's size: no image is read.

  .venv/bin/python benchmarks/units.py --work /work/units --files 1281000 [--mode inproc|mp] [--flat]

Makes WORK/tree-N/ with --files empty files in 1,000 synset folders (ImageNet train's layout), or with --flat
WORK/flat-N/ with all of them in the one folder (made once), then
runs `pipeline.job._file_units` on it, as the job does (listing, check of the inputs, units), counts the units'
inputs, and prints the peak RSS of the largest process (`/usr/bin/time -v`). This is the part of the job's
memory that grows with the number of inputs (BENCHMARKS.md, Preprocessing at scale).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = 1000

CHILD = r'''
import sys, tempfile
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from pipeline import config, job
root, mode = sys.argv[1:]
cfg = config.Config(inputs=[root], output=tempfile.mkdtemp(), num_shards=8, unit_size=256)
args = ['--runner', 'DirectRunner']
if mode == 'mp':
  args += ['--direct_num_workers', '2', '--direct_running_mode', 'multi_processing']
with beam.Pipeline(options=PipelineOptions(args)) as p:
  _ = (job._file_units(p, cfg) | beam.MapTuple(lambda unit, srcs: len(srcs)) | beam.CombineGlobally(sum)
       | beam.Map(lambda n: print('inputs in units', n, flush=True)))
'''


def make_tree(root, files, flat):
  if flat:
    os.makedirs(root, exist_ok=True)
    for j in range(files):
      open(os.path.join(root, f'photo_{j}.jpg'), 'ab').close()
    return
  per = -(-files // FOLDERS)
  made = 0
  for d in range(FOLDERS):
    folder = os.path.join(root, f'n{d:08d}')
    os.makedirs(folder, exist_ok=True)
    for j in range(min(per, files - made)):
      open(os.path.join(folder, f'n{d:08d}_{j}.JPEG'), 'ab').close()
    made += min(per, files - made)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--work', default=os.path.join(tempfile.gettempdir(), 'units-benchmark'))
  p.add_argument('--files', type=int, default=1281000)
  p.add_argument('--mode', choices=['inproc', 'mp'], default='inproc')
  p.add_argument('--flat', action='store_true', help='every file in one folder, no sub-folders')
  args = p.parse_args()
  root = os.path.join(args.work, f'{"flat" if args.flat else "tree"}-{args.files}')
  make_tree(root, args.files, args.flat)
  out = subprocess.run(['/usr/bin/time', '-v', sys.executable, '-c', CHILD, root, args.mode], cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True)
  text = out.stdout + out.stderr
  counted = re.search(r'inputs in units (\d+)', text)
  if out.returncode or not counted:
    sys.exit(text[-3000:])
  rss = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', text).group(1))
  wall = re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)', text).group(1)
  layout = ' in one folder' if args.flat else ''
  print(f'{args.files} files{layout}, {args.mode}: {counted.group(1)} inputs in units, '
        f'peak RSS {rss / 2 ** 20:.3f} GiB (largest process), {wall} wall')


if __name__ == '__main__':
  main()
