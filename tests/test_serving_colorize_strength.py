"""python -m serving.colorize --strength: the bytes of Colorizer.colorize(strength=) and of the web API's
?strength=, the export's default bytes without it, and clear refusals for models without the control."""
import subprocess
import sys
import urllib.parse

import pytest
from absl import app as absl_app

import serving_model as sm
from paths import REPO
from pipeline import cli
from serving import app, colorize, exported, server as http_server
from test_app import call


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  root = tmp_path_factory.mktemp('photos')
  (root / 'street.jpg').write_bytes(sm.jpeg(sm.grey_photo(120, 160)))
  (root / 'portrait.png').write_bytes(sm.png(sm.grey_photo(90, 60)))
  return root


def _written(report):
  return {p.rsplit('/', 1)[-1]: open(p, 'rb').read() for p in report.written}


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_a_strength_gives_the_bytes_of_the_colorizer_and_of_the_web_api(photos, tmp_path, fmt):
  colorizer = sm.colorizer()
  ext = colorize.EXTENSIONS[fmt]
  sources = {f'street{ext}': photos / 'street.jpg', f'portrait{ext}': photos / 'portrait.png'}
  with http_server.Background(app.make_app(app.Service(colorizer))) as server:
    for strength in (0.0, 0.8, 1.0):
      report = colorize.run(colorizer, [str(photos)], str(tmp_path / f'{fmt}{strength}'), fmt, batch_size=1,
                            progress=False, strength=strength)
      got = _written(report)
      assert sorted(got) == sorted(sources) and not report.failed
      for name, source in sources.items():
        image = source.read_bytes()
        assert got[name] == colorizer.colorize([image], fmt, strength=strength)[0]
        query = urllib.parse.urlencode({'strength': strength, 'format': fmt})
        status, _, body = call(server, 'POST', f'/v1/colorize?{query}', image)
        assert status == 200 and got[name] == body, strength
  plain = _written(colorize.run(colorizer, [str(photos)], str(tmp_path / 'plain'), fmt, progress=False))
  default = _written(colorize.run(colorizer, [str(photos)], str(tmp_path / 'default'), fmt, progress=False,
                                  strength=colorizer.default_strength))
  assert plain == default and plain != got     # the default strength: the bytes of no strength


def test_the_flag_on_the_command_line(photos, tmp_path):
  image = (photos / 'street.jpg').read_bytes()
  proc = subprocess.run([sys.executable, '-m', 'serving.colorize', '--model', sm.export_dir(), '--strength', '0.9',
                         str(photos / 'street.jpg'), '--output', str(tmp_path / 'out')],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / 'out' / 'street.jpg').read_bytes() == sm.colorizer().colorize([image], strength=0.9)[0]
  for bad in ('1.5', '-0.1'):
    with pytest.raises(absl_app.UsageError, match='--strength'):
      cli.parse(colorize.Config, ['prog', '--model', 'm', '--output', 'o', '--strength', bad])
  assert cli.parse(colorize.Config, ['prog', '--model', 'm', '--output', 'o'])[0].strength is None


@pytest.mark.parametrize('kind, why', [
    ('mse', 'predicts one colour per pixel (it was trained with --loss mse, no colour distribution): there is '
            'nothing to make stronger or paler'),
    ('old', 'was exported before the colour-strength control existed: re-export it with python -m trainer.export '
            '--job-dir JOB_DIR'),
])
def test_models_without_the_control_are_refused_before_any_work(photos, tmp_path, kind, why):
  model = tmp_path / 'model'
  if kind == 'mse':
    sm.save_pattern(str(model / '1'))
  else:
    sm.save_distribution(str(model / '1'), strength=False)
  out = tmp_path / 'out'
  cfg, argv = cli.parse(colorize.Config, ['prog', '--model', str(model), '--output', str(out), '--strength', '0.3',
                                          str(photos)])
  with pytest.raises(absl_app.UsageError) as e:
    colorize.main(cfg, argv)
  assert str(e.value).startswith(f'--strength: this model ({exported.Colorizer(str(model)).path})')
  assert why in str(e.value) and not out.exists()
  cfg, argv = cli.parse(colorize.Config, ['prog', '--model', str(model), '--output', str(out), str(photos)])
  assert colorize.main(cfg, argv) == 0 and len(list(out.iterdir())) == 2     # without --strength: as before
