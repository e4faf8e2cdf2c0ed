"""The Beam job end to end on real photos (DirectRunner), bad inputs, determinism, CLI, TFDS, Dataflow."""
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from absl import app

import corpus
from paths import REPO
from pipeline import job, preprocess, schema, sources

RANDOM = ['--embedder', 'mobilenet_v2', '--embedder-weights', 'random', '--runner', 'DirectRunner']


def _records(out):
  """{key: (split, serialized bytes)} of every record written."""
  found = {}
  for split in schema.SPLITS:
    for path in tf.io.gfile.glob(schema.shard_glob(str(out), split)):
      for raw in tf.data.TFRecordDataset(path):
        ex = tf.train.Example.FromString(raw.numpy())
        found[ex.features.feature['key'].bytes_list.value[0].decode()] = (split, raw.numpy())
  return found


@pytest.fixture(scope='module')
def mixed(tmp_path_factory):
  """One run over the bad-input corpus plus the scikit-image photos."""
  root = tmp_path_factory.mktemp('mixed')
  files = corpus.write(root / 'in' / 'corpus')
  for path in sources.sample_photos()[:4]:
    shutil.copy(path, root / 'in')
  (root / 'in' / 'README.txt').write_text('not an image name: skipped when a folder is read')
  out = root / 'out'
  summary = preprocess.run(['prog', '--input', str(root / 'in'), '--output', str(out), '--num-shards', '2',
                            '--val-fraction', '0.3'] + RANDOM)
  return files, out, summary


def test_every_input_is_a_record_or_a_failure_line(mixed):
  files, out, summary = mixed
  good = len(corpus.GOOD) + 4
  assert summary['read'] == good + len(corpus.BAD)
  assert sum(summary['written'].values()) == good
  assert summary['failed'] == {r: list(corpus.BAD.values()).count(r) for r in set(corpus.BAD.values())}
  lines = [json.loads(l) for l in (out / schema.FAILURES_FILE).read_text().splitlines()]
  assert {os.path.basename(l['path']): l['reason'] for l in lines} == corpus.BAD
  assert all(l['detail'] for l in lines)
  keys = {os.path.basename(k) for k in _records(out)}
  assert keys == set(corpus.GOOD) | {os.path.basename(p) for p in sources.sample_photos()[:4]}


def test_metadata_describes_the_output(mixed):
  _, out, summary = mixed
  meta = schema.read_metadata(str(out))
  assert meta['counts'] == summary['written']
  assert meta['embedder']['name'] == 'mobilenet_v2' and meta['embedder']['weights'] == 'random'
  assert meta['image_size'] == 256 and meta['embedder']['dim'] == 1000
  assert meta['failures']['count'] == len(corpus.BAD)
  assert meta['shards']['train'] == ['train-00000-of-00002.tfrecord', 'train-00001-of-00002.tfrecord']
  hist = np.array(meta['ab_histogram']['counts'])
  assert hist.shape == (23, 23) and hist.sum() > 0
  # Every training pixel of the content box is counted once.
  parsed = schema.parse_batch(tf.constant([r for s, r in _records(out).values() if s == 'train']), meta)
  assert hist.sum() == int(tf.reduce_sum(parsed['box'][:, 2] * parsed['box'][:, 3]))


def test_records_hold_the_letterboxed_lab_of_the_photo(mixed):
  _, out, _ = mixed
  meta = schema.read_metadata(str(out))
  split, raw = next(v for k, v in _records(out).items() if k.endswith('exif-rotated.jpg'))
  r = {k: v[0].numpy() for k, v in schema.parse_batch(tf.constant([raw]), meta).items()}
  assert r['size'].tolist() == [80, 40]             # EXIF orientation applied
  assert r['box'].tolist() == [0, 64, 256, 128]     # tall image centred
  assert (r['lab'][:, :64] == 0).all() and (r['lab'][:, 192:] == 0).all()
  content = r['lab'][:, 64:192]
  assert 10 < content[..., 0].mean() < 90 and np.abs(content[..., 1:]).max() > 5  # a colour photo
  assert r['embedding'].shape == (1000,) and abs(r['embedding'].sum() - 1) < 0.01
  assert r['label'] == -1


def test_reruns_agree_on_split_and_bytes(mixed, tmp_path):
  _, first, _ = mixed
  src = first.parent / 'in'
  preprocess.run(['prog', '--input', str(src), '--output', str(tmp_path), '--num-shards', '3',
                  '--val-fraction', '0.3'] + RANDOM)
  a, b = _records(first), _records(tmp_path)
  assert a.keys() == b.keys()
  assert {k: v[0] for k, v in a.items()} == {k: v[0] for k, v in b.items()}
  assert {k: v[1] for k, v in a.items()} == {k: v[1] for k, v in b.items()}
  assert {v[0] for v in a.values()} == {'train', 'val'}


def test_units_cross_the_group_by_as_one_blob_each():
  # Paths with a newline, quotes and non-ASCII survive the packing; each unit's Sources come out sorted by key,
  # whatever the order and bundles they were listed in; they are packed into compressed blobs as they come.
  import apache_beam as beam
  from apache_beam.testing.util import assert_that, equal_to
  odd = ['/d/a\nb.jpg', '/d/"q".png', '/d/ünï.JPEG', '/d/n01440764/x.jpg', '/d/z.jpg', '/d/b.jpg']
  srcs = [sources.Source(p, p[3:], *sources.label_of(p)) for p in odd]
  fn, acc = job._UnitSources(), []
  many = [sources.Source(f'/data/train/n01440764/n01440764_{i}.JPEG', f'n01440764/n01440764_{i}.JPEG',
                         'n01440764', 0) for i in range(256)]
  text = sum(len(fn.add_input([], src)[0]) for src in many)
  for src in many[:-1]:
    acc = fn.add_input(acc, src)
  assert len(acc) == 255 // job.PACK + 255 % job.PACK and all(isinstance(x, bytes) for x in acc)
  packed = fn.compact(fn.add_input(acc, many[-1]))
  assert len(packed) == 256 // job.PACK and sum(map(len, packed)) < text / 3  # compressed blobs only
  assert fn.extract_output(fn.merge_accumulators([packed, fn.add_input([], srcs[0])])) == sorted(many + srcs[:1])
  with beam.Pipeline('DirectRunner') as p:
    units = (p | beam.Create([(i % 2, s) for i, s in enumerate(srcs)], reshuffle=False)
             | beam.CombinePerKey(job._UnitSources()))
    assert_that(units, equal_to([(0, sorted(srcs[0::2])), (1, sorted(srcs[1::2]))]))


def test_a_flat_folder_is_listed_in_chunks_and_sub_folders_as_patterns(tmp_path, monkeypatch):
  # A folder's own files leave child_patterns a chunk at a time (the reshuffle after it holds an element per
  # chunk, not per input), sub-folders as one pattern each; matching them gives every file exactly once.
  import apache_beam as beam
  from apache_beam.testing.util import assert_that, equal_to
  monkeypatch.setattr(sources, 'LISTED_CHUNK', 4)
  files = [tmp_path / f'p{i}.jpg' for i in range(10)] + [tmp_path / 'a' / 'x.jpg', tmp_path / 'a' / 'b' / 'y.png']
  for f in files:
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b'')
  elements = list(sources.child_patterns(str(tmp_path)))
  chunks = [e for e in elements if isinstance(e, bytes)]
  assert sorted(len(sources.listed_paths(c)) for c in chunks) == [2, 4, 4]
  assert [e for e in elements if e not in chunks] == [str(tmp_path / 'a') + '/**']
  with beam.Pipeline('DirectRunner') as p:
    paths = p | beam.Create(elements) | beam.ParDo(job.ListPattern())
    assert_that(paths, equal_to([str(f) for f in files]))


def test_imagenet_labels_from_folder_and_file_names():
  assert sources.label_of('/data/train/n01440764/n01440764_10026.JPEG') == ('n01440764', 0)
  assert sources.label_of('gs://b/imagenet-sample/n01443537_goldfish.JPEG') == ('n01443537', 1)
  assert sources.label_of('/photos/holiday.jpg') == ('', -1)


def test_cli_prints_a_clean_summary_and_fails_when_nothing_is_written(tmp_path):
  bad = tmp_path / 'bad'
  bad.mkdir()
  (bad / 'x.jpg').write_bytes(b'')
  env = dict(os.environ, PYTHONPATH=str(REPO))
  # Worker processes (as on Dataflow) must unpickle the job's classes by an importable name, not __main__.
  shutil.copy(sources.sample_photos()[1], bad / 'good.png')
  proc = subprocess.run([sys.executable, '-m', 'pipeline.preprocess', '--input', str(bad),
                         '--output', str(tmp_path / 'out'), '--direct_num_workers', '2',
                         '--direct_running_mode', 'multi_processing'] + RANDOM,
                        capture_output=True, text=True, env=env, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert 'read     2' in proc.stdout and 'written  1' in proc.stdout and 'empty_file 1' in proc.stdout
  assert proc.stderr.strip() == '', proc.stderr  # a clean terminal: no TF or Beam notices

  (bad / 'good.png').unlink()
  proc = subprocess.run([sys.executable, '-m', 'pipeline.preprocess', '--input', str(bad),
                         '--output', str(tmp_path / 'out1')] + RANDOM, capture_output=True, text=True, env=env,
                        cwd=tmp_path)
  assert proc.returncode == 1, proc.stderr
  assert 'read     1' in proc.stdout and 'empty_file 1' in proc.stdout
  assert 'no record was written' in proc.stderr

  proc = subprocess.run([sys.executable, '-m', 'pipeline.preprocess', '--input', str(tmp_path / 'nope'),
                         '--output', str(tmp_path / 'out')] + RANDOM, capture_output=True, text=True, env=env)
  assert proc.returncode == 2 and 'nothing matches' in proc.stderr


def test_help_lists_the_flags_and_a_bad_value_is_named_without_a_traceback(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, '-m', 'pipeline.preprocess', '--help'], capture_output=True, text=True,
                        env=env, cwd=tmp_path)
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]   # absl's --help exits with 1
  for flag in ('input', 'tfds', 'tfds-split', 'output', 'embedder', 'embedder-weights', 'num-shards',
               'val-fraction', 'unit-size', 'max-pixels'):
    assert f'--{flag}:' in proc.stdout, flag
  proc = subprocess.run([sys.executable, '-m', 'pipeline.preprocess', '--output', str(tmp_path / 'out'),
                         '--embedder', 'vgg', '--runner', 'DirectRunner'], capture_output=True, text=True, env=env,
                        cwd=tmp_path)
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  assert 'flag --embedder=vgg: value should be one of <inception_resnet_v2|mobilenet_v2>' in proc.stderr
  assert not (tmp_path / 'out').exists()
  for argv, message in ((['--num-shards', '0'], 'flag --num-shards=0'), (['--unit-size', '0'], 'flag --unit-size=0'),
                        (['--val-fraction', '1'], '--val-fraction must be in \\[0, 1\\)')):
    with pytest.raises(app.UsageError, match=message):
      preprocess.run(['prog', '--output', str(tmp_path / 'out')] + argv)


def test_weights_that_cannot_be_had_fail_clearly_without_fallback(tmp_path):
  from pipeline import embedder
  with pytest.raises(embedder.EmbedderError, match='missing.weights.h5 does not exist'):
    embedder.build('mobilenet_v2', str(tmp_path / 'missing.weights.h5'))
  # 'imagenet' with no way to download (empty Keras cache, a proxy that refuses): an error, never other weights.
  env = dict(os.environ, PYTHONPATH=str(REPO), KERAS_HOME=str(tmp_path), HOME=str(tmp_path),
             https_proxy='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9')
  proc = subprocess.run([sys.executable, '-m', 'pipeline.preprocess', '--output', str(tmp_path / 'out'),
                         '--embedder', 'mobilenet_v2', '--embedder-weights', 'imagenet', '--runner',
                         'DirectRunner'], capture_output=True, text=True, env=env, cwd=tmp_path)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'cannot download the ImageNet weights of MobileNetV2' in proc.stderr
  assert not (tmp_path / 'out' / schema.METADATA_FILE).exists()


def test_real_mobilenet_weights_on_imagenet_photos(shared_imagenet, mobilenet_weights, tmp_path):
  # Every 100th photo of the sample (10), and one of its single-channel greyscale JPEGs.
  picked = [p.name for p in sorted(shared_imagenet.glob('*.JPEG'))[::100]] + ['n02096051_Airedale.JPEG']
  src = tmp_path / 'in'
  src.mkdir()
  for name in picked:
    shutil.copy(shared_imagenet / name, src / name)
  out = tmp_path / 'out'
  summary = preprocess.run(['prog', '--input', str(src), '--output', str(out), '--embedder', 'mobilenet_v2',
                            '--embedder-weights', str(mobilenet_weights), '--runner', 'DirectRunner'])
  assert sum(summary['written'].values()) == len(picked)
  meta = schema.read_metadata(str(out))
  assert meta['embedder']['weights_sha256'].startswith('430ef1ef')
  recs = schema.parse_batch(tf.constant([r for _, r in _records(out).values()]), meta)
  labels, emb = recs['label'].numpy(), recs['embedding'].numpy()
  assert sorted(labels.tolist()) == sorted(sources.imagenet_synsets()[p[:9]] for p in picked)
  # The classifier sees only the grey letterboxed image, yet a working embedder still knows most classes
  # (78 % top-5 on 100 of these photos, BUILD_NOTES.md; random weights would score about 0.5 %).
  top5 = [label in np.argsort(-e)[:5] for label, e in zip(labels, emb)]
  assert sum(top5) >= 7, top5


def test_tfds_dataset_by_name(tmp_path):
  from tiny_photos import TinyPhotos

  TinyPhotos(data_dir=str(tmp_path / 'tfds')).download_and_prepare()
  out = tmp_path / 'out'
  argv = ['prog', '--tfds', 'tiny_photos', '--tfds-data-dir', str(tmp_path / 'tfds'), '--output', str(out),
          '--num-shards', '1', '--unit-size', '2'] + RANDOM
  summary = preprocess.run(argv)
  assert sum(summary['written'].values()) == 5 and summary['failed'] == {}
  assert summary['units'] == 3  # slices of at most --unit-size examples of TFDS's one file
  # The only reshuffle moves slice descriptors; the image bytes are read after it, in the fused stage.
  import apache_beam as beam
  cfg = preprocess.job_config(preprocess.parse(argv)[0])
  pipeline = beam.Pipeline(runner='DirectRunner')
  job.build(pipeline, cfg)
  proto = pipeline.to_runner_api()
  producer = {pc: t.unique_name for t in proto.components.transforms.values() if not t.subtransforms
              for pc in t.outputs.values()}
  consumer_inputs = {t.unique_name: list(t.inputs.values()) for t in proto.components.transforms.values()}
  skip_input = consumer_inputs['SkipCommitted']
  assert [producer[pc] for pc in skip_input][0].startswith('SpreadSlices/')
  assert [producer[pc].split('/')[0] for pc in consumer_inputs['ReadTFDS']] == ['SkipCommitted']
  recs = _records(out)
  assert all(k.startswith('tfds://tiny_photos/train/') for k in recs)
  labels = sorted(tf.train.Example.FromString(r).features.feature['label'].int64_list.value[0]
                  for _, r in recs.values())
  assert labels == [0, 0, 0, 1, 1]


def test_dataflow_packaging_and_graph(tmp_path):
  # The sdist that --setup_file builds holds every package and declares the dependencies...
  subprocess.run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(tmp_path)], cwd=REPO, check=True,
                 capture_output=True)
  (sdist,) = tmp_path.glob('colorizer-*.tar.gz')
  with tarfile.open(sdist) as t:
    names = t.getnames()
    requires = t.extractfile(next(n for n in names if n.endswith('.egg-info/requires.txt'))).read().decode()
  for module in ('pipeline/preprocess.py', 'pipeline/schema.py', 'pipeline/embed_handler.py'):
    assert any(n.endswith(module) for n in names), module
  for dep in ('tensorflow', 'apache-beam', 'tensorflow-datasets', 'tfrecord', 'gcsfs', 'pillow'):
    assert any(line.startswith(dep) for line in requires.splitlines()), dep
  # ...pip can install it with those dependencies (resolved against this environment, no index)...
  report = tmp_path / 'report.json'
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index', '--no-build-isolation',
                  '--quiet', '--report', str(report), str(sdist)], check=True, capture_output=True)
  assert [i['metadata']['name'] for i in json.loads(report.read_text())['install']] == ['colorizer']
  # ...and the job's graph translates for Dataflow (dry run: built and staged locally, not submitted).
  import apache_beam as beam
  cfg, beam_args = preprocess.parse(['prog', '--output', 'gs://bucket/records', '--runner', 'DataflowRunner',
                                     '--project', 'colorizer-test', '--region', 'us-central1', '--temp_location',
                                     'gs://bucket/tmp', '--no_auth', '--dry_run=True',
                                     '--sdk_location=container'] + RANDOM[:4])
  cfg = preprocess.job_config(cfg)
  options = preprocess._pipeline_options(beam_args)
  assert options.get_all_options()['setup_file'].endswith('setup.py')
  pipeline = beam.Pipeline(options=options)
  job.build(pipeline, cfg)
  result = pipeline.run()
  assert result.job.proto.type.name == 'JOB_TYPE_BATCH'
  transforms = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
  assert {'Prepare', 'Embed', 'WriteUnit', 'Assemble', 'WriteMetadata'} <= transforms
