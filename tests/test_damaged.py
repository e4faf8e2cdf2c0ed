"""A seeded slice of damaged and unusual files (pipeline.damaged) through the preprocessing job: no crash, no hang,
every input a record or a failure line with a reason."""
import json

from pipeline import damaged, preprocess, schema

COUNT = 60   # six of each kind; benchmarks/damaged.py runs 1,000


def test_the_generator_is_seeded_and_covers_every_kind(tmp_path):
  a = damaged.write(tmp_path / 'a', 20, seed=3)
  b = damaged.write(tmp_path / 'b', 20, seed=3)
  assert a == b and set(a.values()) == set(damaged.KINDS)
  for name in a:
    assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
  c = damaged.write(tmp_path / 'c', 20, seed=4)
  assert sorted(c.values()) == sorted(a.values()) and c != a   # the same kinds, other files


def test_every_damaged_input_is_a_record_or_a_failure_with_a_reason(tmp_path):
  manifest = damaged.write(tmp_path / 'in', COUNT)
  summary = preprocess.run(['prog', '--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'out'),
                            '--embedder', 'mobilenet_v2', '--embedder-weights', 'random', '--image-size', '32',
                            '--num-shards', '1', '--runner', 'DirectRunner'])
  failures = [json.loads(line) for line in (tmp_path / 'out' / schema.FAILURES_FILE).read_text().splitlines()]
  failed = {f['path'].rsplit('/', 1)[-1]: f['reason'] for f in failures}
  assert summary['read'] == COUNT and sum(summary['written'].values()) + len(failures) == COUNT
  assert set(failed.values()) <= {'empty_file', 'not_an_image', 'corrupt_image', 'too_many_pixels', 'empty_image'}
  kinds = lambda kind: {n for n, k in manifest.items() if k == kind}
  assert kinds('zero_bytes') <= set(failed) and kinds('not_an_image') <= set(failed)
  assert kinds('huge') <= set(failed) and not (kinds('wrong_extension') | kinds('animated') | kinds('deep')
                                              | kinds('cmyk')) & set(failed)
