"""The colouring job (serving.batch) on real engines: DirectRunner in-process and with multi-processing workers,
a SIGKILLed run finished by the same command, refused changes, the CLI's bytes, hostile names, damaged files.

The model is the serving tests' real export (tests/serving_model.py: two training steps, every signature); the
photos are tiny, so a run takes seconds beyond the model's load.
"""
import hashlib
import json
import os
import sys

import numpy as np
import pytest
from absl import app
from PIL import Image

import jobs
import serving_model
from pipeline import cli, damaged, resume
from serving import batch, batch_job, batch_names, colorize, user_hints

FLAGS = ['--unit-size', '3', '--batch-size', '2', '--runner', 'DirectRunner']
MULTI = ['--direct_num_workers', '2', '--direct_running_mode', 'multi_processing']
HINTS = {'p01.png': [{'x': 0.5, 'y': 0.5, 'colour': '#3060c0', 'radius': 0.2}],
         'sub/q0.jpg': [{'x': 0.2, 'y': 0.8, 'colour': '#40a040'}]}
GOOD = ['p00.png', 'p01.png', 'p02.jpg', 'p03.png', 'p04.jpg', 'p05.png', 'photo.png', 'sub/q0.jpg',
        'sub/q1.png', 'sub/deeper/r0.jpg', 'sub/deeper/r1.png']


def _photos(folder):
  """Tiny grey photos in sub-folders, a pair whose outputs collide, an empty file, a text file named .png, and
  names no output may take."""
  rng = np.random.default_rng(0)
  for i, name in enumerate(GOOD + ['photo.tif', '.work/w.png', 'new\nline.png']):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (18 + i, 26 + 2 * i), np.uint8)).save(path)
  with open(os.path.join(os.fsencode(folder), b'bytes-\xff.png'), 'wb') as f:   # not UTF-8
    f.write((folder / 'p00.png').read_bytes())
  (folder / 'empty.jpg').write_bytes(b'')
  (folder / 'notes.png').write_text('not an image')
  return folder


def _files(out):
  """{relative name: sha256} of every file under a folder (work files included)."""
  return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(out.rglob('*')) if p.is_file()}


def _failures(out):
  return {json.loads(line)['path'].rsplit('/in/', 1)[1]: json.loads(line)
          for line in (out / 'failures.jsonl').read_text().splitlines()}


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp('batch')
  hints = root / 'hints.json'
  hints.write_text(json.dumps(HINTS))
  return _photos(root / 'in'), hints


@pytest.fixture(scope='module')
def clean(inputs):
  """An uninterrupted in-process run with per-file hints: the reference output."""
  src, hints = inputs
  out = src.parent / 'clean'
  summary = batch.run(['prog', '--model', serving_model.export_dir(), '--input', str(src), '--output', str(out),
                       '--hints-file', str(hints)] + FLAGS)
  return out, summary


def _command(src, out, hints, *extra):
  return ([sys.executable, '-m', 'serving.batch', '--model', serving_model.export_dir(), '--input', str(src),
           '--output', str(out), '--hints-file', str(hints)] + FLAGS + list(extra))


def test_every_input_is_an_image_or_a_failure_line_and_nothing_is_written_outside(clean, inputs):
  out, summary = clean
  src, _ = inputs
  count = len(GOOD) + 6   # + photo.tif, three unsafe names, empty.jpg, notes.png
  assert summary['read'] == count and summary['written'] == len(GOOD) and summary['state'] == 'new'
  assert summary['failed'] == {'empty_file': 1, 'name_collision': 1, 'not_an_image': 1, 'unsafe_name': 3}
  expected = {os.path.splitext(n)[0] + '.jpg' for n in GOOD}
  assert set(_files(out)) == expected | {'failures.jsonl', 'summary.json'}   # no work files left
  assert sorted(os.listdir(src.parent)) == ['clean', 'hints.json', 'in']   # nothing beside --output
  for name in expected:
    with Image.open(out / name) as img:
      assert img.format == 'JPEG' and img.mode == 'RGB'
  failed = _failures(out)
  assert failed['photo.tif']['reason'] == 'name_collision'
  assert f'{src}/photo.png, which keeps it' in failed['photo.tif']['detail']
  assert failed['empty.jpg']['reason'] == 'empty_file' and failed['notes.png']['reason'] == 'not_an_image'
  unsafe = {k: v['detail'] for k, v in failed.items() if v['reason'] == 'unsafe_name'}
  assert unsafe == {'.work/w.png': ".work/w.png: it is under a folder named .work, the job's own work area in "
                                   '--output; rename it',
                    'new\nline.png': 'new\\nline.png: its name holds a control character (a newline, a tab, ...); '
                                     'rename it',
                    'bytes-\0ff.png': 'bytes-\\xff.png: its name is not valid UTF-8; rename it'}
  meta = json.loads((out / batch_job.SUMMARY_FILE).read_text())
  assert meta['counts'] == {'read': count, 'written': len(GOOD), 'had_colour': 0}
  assert meta['failures']['count'] == 6 and meta['job']['units'] == summary['units'] == 6   # ceil(17 / 3)
  assert meta['model']['path'].startswith(serving_model.export_dir())


def test_the_cli_and_the_job_give_the_same_bytes_for_the_same_photos_and_hints(clean, inputs, tmp_path):
  out, _ = clean
  src, hints = inputs
  report = colorize.run(serving_model.colorizer(), [str(src)], str(tmp_path / 'cli'), 'jpeg', progress=False,
                        hints=colorize.hints_for(*colorize.read_hints_file(str(hints))))
  cli = _files(tmp_path / 'cli')
  job = {k: v for k, v in _files(out).items() if k.endswith('.jpg')}
  assert len(report.written) > len(job) and job.items() <= cli.items()
  hinted = serving_model.colorizer().colorize([(src / 'p01.png').read_bytes()], 'jpeg')[0]
  assert hashlib.sha256(hinted).hexdigest() != job['p01.jpg']   # the hint changed the colours: it was used


def test_png_output_equals_the_clis_and_a_finished_job_is_not_run_again(inputs, tmp_path):
  src, _ = inputs
  argv = ['prog', '--model', serving_model.export_dir(), '--input', str(src / 'sub'), '--output',
          str(tmp_path / 'png'), '--format', 'png', '--hint', '0.5,0.5,#c03030'] + FLAGS
  summary = batch.run(argv)
  assert summary['written'] == 4 and summary['failed'] == {}
  colorize.run(serving_model.colorizer(), [str(src / 'sub')], str(tmp_path / 'cli'), 'png', progress=False,
               hints=colorize.hints_for([user_hints.parse_cli('0.5,0.5,#c03030')]))
  assert {k: v for k, v in _files(tmp_path / 'png').items() if k.endswith('.png')} == _files(tmp_path / 'cli')
  again = batch.run(argv)
  assert again['state'] == 'complete' and again['units_skipped'] == again['units'] and again['written'] == 4


def test_strength_gives_the_strength_signatures_bytes_and_a_model_without_it_is_refused(clean, inputs, tmp_path):
  reference, _ = clean
  src, _ = inputs
  argv = ['prog', '--input', str(src / 'sub'), '--strength', '0.9'] + FLAGS
  summary = batch.run(argv + ['--model', serving_model.export_dir(), '--output', str(tmp_path / 'vivid')])
  assert summary['written'] == 4 and summary['failed'] == {}
  colorizer = serving_model.colorizer()
  for name in ['q0.jpg', 'q1.png', 'deeper/r0.jpg', 'deeper/r1.png']:
    data = (src / 'sub' / name).read_bytes()
    jpg = os.path.splitext(name)[0] + '.jpg'
    assert (tmp_path / 'vivid' / jpg).read_bytes() == colorizer.colorize([data], 'jpeg', strength=0.9)[0], name
    assert (tmp_path / 'vivid' / jpg).read_bytes() != (reference / 'sub' / jpg).read_bytes()   # not the default
  assert json.loads((tmp_path / 'vivid' / batch_job.SUMMARY_FILE).read_text())['strength'] == 0.9

  serving_model.save_pattern(str(tmp_path / 'mse' / '1'))   # an mse export: no colour-strength signatures
  with pytest.raises(app.UsageError, match=f'--model {tmp_path}/mse/1 has no signature colorize_strength: it has '
                     'no colour-strength control'):
    batch.run(argv + ['--model', str(tmp_path / 'mse'), '--output', str(tmp_path / 'refused')])
  assert not (tmp_path / 'refused').exists()


@pytest.mark.slow
def test_sigkill_then_the_same_command_gives_the_clean_output_and_changes_are_refused(clean, inputs, tmp_path):
  reference, _ = clean
  src, hints = inputs
  out = tmp_path / 'out'
  proc = jobs.start(_command(src, out, hints), tmp_path)
  assert jobs.kill_when(proc, lambda: jobs.committed(out) >= 1, timeout=300), 'the job finished before the kill point'
  assert not (out / batch_job.SUMMARY_FILE).exists()
  images = {k: v for k, v in _files(out).items() if not k.startswith(resume.WORK)}
  assert images.items() <= _files(reference).items()   # what is there is whole: the clean run's bytes
  before = jobs.committed(out)

  proc = jobs.run(_command(src, out, hints, '--format', 'png'), tmp_path)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert f'{out} holds an unfinished job with other flags' in proc.stderr
  assert "format: 'jpeg' then, 'png' now" in proc.stderr and 'run that command again' in proc.stderr

  proc = jobs.run(_command(src, out, hints), tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'resumed  {before} of 6 work units were already done' in proc.stdout, proc.stdout
  assert 'failed   6  (empty_file 1, name_collision 1, not_an_image 1, unsafe_name 3' in proc.stdout
  assert '  model    loaded in ' in proc.stdout   # the one-off cost that a short run's images/s includes
  assert _files(out) == _files(reference)

  proc = jobs.run(_command(src, out, hints, '--batch-size', '3'), tmp_path)
  assert proc.returncode == 2 and 'already holds the finished output of another job' in proc.stderr
  assert 'batch_size: 2 then, 3 now' in proc.stderr


@pytest.mark.slow
def test_multi_processing_workers_write_the_clean_bytes(clean, inputs, tmp_path):
  reference, _ = clean
  src, hints = inputs
  proc = jobs.run(_command(src, tmp_path / 'multi', hints, *MULTI), tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Colouring finished' in proc.stdout and f'written  {len(GOOD)}  (jpeg)' in proc.stdout
  assert _files(tmp_path / 'multi') == _files(reference)


def test_an_output_that_holds_other_files_or_lies_in_an_input_is_refused(inputs, tmp_path, capsys):
  src, _ = inputs
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'mine.jpg').write_bytes(b'a photo of the user')
  base = ['serving.batch', '--model', serving_model.export_dir()] + FLAGS
  # The CLI's main with what cli.run gives it, in this process.
  main = lambda *flags: batch.main(*cli.parse(batch.Config, base + list(flags), known_only=True))
  assert main('--input', str(src), '--output', str(tmp_path / 'full')) == 2
  assert main('--input', str(src), '--output', str(src / 'coloured')) == 2
  assert main('--input', str(tmp_path / 'nothing'), '--output', str(tmp_path / 'x')) == 2
  err = capsys.readouterr().err.splitlines()
  assert err[0] == (f'error: {tmp_path}/full already holds files (mine.jpg, ...) but no record of the job that '
                    'wrote them; choose another --output, or delete them to start over')
  assert err[1].startswith(f'error: --output {src}/coloured is inside --input {src}: the images it writes would')
  assert err[2].startswith(f'error: --input {tmp_path}/nothing: nothing matches')
  assert (tmp_path / 'full' / 'mine.jpg').read_bytes() == b'a photo of the user' and len(err) == 3


def test_every_damaged_input_is_an_image_or_a_failure_with_a_reason(tmp_path):
  manifest = damaged.write(tmp_path / 'in', 60)   # six of each kind, as tests/test_damaged.py gives the other job
  summary = batch.run(['prog', '--model', serving_model.export_dir(), '--input', str(tmp_path / 'in'), '--output',
                       str(tmp_path / 'out'), '--runner', 'DirectRunner'])
  failed = {f['path'].rsplit('/', 1)[1]: f['reason'] for f in _failures_of(tmp_path / 'out')}
  written = {p.name for p in (tmp_path / 'out').glob('*.jpg')}
  assert summary['read'] == 60 and summary['written'] + len(failed) == 60 == len(written) + len(failed)
  assert {os.path.splitext(n)[0] for n in written}.isdisjoint(os.path.splitext(n)[0] for n in failed)
  assert set(failed.values()) <= {'empty_file', 'not_an_image', 'corrupt_image', 'too_many_pixels', 'empty_image'}
  kinds = lambda kind: {n for n, k in manifest.items() if k == kind}
  assert kinds('zero_bytes') <= set(failed) and kinds('not_an_image') <= set(failed)
  assert {failed[n] for n in kinds('huge')} == {'too_many_pixels'}
  assert not (kinds('wrong_extension') | kinds('animated') | kinds('deep') | kinds('cmyk')) & set(failed)


def _failures_of(out):
  return [json.loads(line) for line in (out / 'failures.jsonl').read_text().splitlines()]


def test_names_are_refused_or_resolved_by_the_name_alone():
  src = lambda key, rel: batch_names.source(key, key[:-len(rel) - 1])
  found = [src('/in/a/photo.png', 'a/photo.png'), src('/in/a/photo.tif', 'a/photo.tif'),
           src('/in2/a/photo.webp', 'a/photo.webp'), src('/in/../x.png', '../x.png'), src('/in//x.png', '/x.png'),
           src('/in/a/./x.png', 'a/./x.png')]
  key = lambda s: batch_names.unit_key('.jpg', s)
  assert key(found[0]) == key(found[1]) == key(found[2]) == 'a/photo.jpg'   # one unit, whatever their number
  named = batch_names.assign(sorted(found, key=lambda s: s.key), '.jpg')
  outcome = {s.key: name or failure['reason'] for s, name, failure in named}
  assert outcome == {'/in/a/photo.png': 'a/photo.jpg', '/in/a/photo.tif': 'name_collision',
                     '/in2/a/photo.webp': 'name_collision', '/in/../x.png': 'unsafe_name',
                     '/in//x.png': 'unsafe_name', '/in/a/./x.png': 'unsafe_name'}
  twice = batch_names.assign([found[0], found[0]], '.jpg')[1][2]
  assert 'the same file, listed twice by --input' in twice['detail']
  assert batch_names.source('xa.png', 'x').relative_key == 'xa.png'   # a local glob `x*.png`: its root is 'x'
