"""The serving entry points' flags, made from their Config dataclasses by pipeline.cli: required flags, and the two
pixel limits, each named for what it guards."""
import subprocess
import sys

import pytest
from absl import app as absl_app

from paths import REPO
from pipeline import cli, decode
from serving import app, colorize, evaluate, service


@pytest.mark.parametrize('config, required', [
    (colorize.Config, {'model': 'm', 'output': 'o'}),
    (evaluate.Config, {'model': 'm', 'images': 'a'}),
    (app.Config, {'model': 'm'}),
])
def test_required_flags_are_refused_by_name_when_missing(config, required):
  def argv(given):
    return ['prog'] + [arg for name, value in given.items() for arg in (f'--{name}', value)]
  for flag in required:
    with pytest.raises(absl_app.UsageError, match=f'--{flag} must have a value'):
      cli.parse(config, argv({k: v for k, v in required.items() if k != flag}))
  cfg, rest = cli.parse(config, argv(required) + ['photo.jpg'])
  assert cfg.model == 'm' and rest == ['prog', 'photo.jpg']
  assert cli.parse(config, ['prog'] + cli.as_flags(cfg))[0] == cfg


def test_the_bomb_guard_and_the_servers_budget_are_two_limits_that_say_so():
  cfg = cli.parse(colorize.Config, ['prog', '--model', 'm', '--output', 'o'])[0]
  assert cfg.max_pixels == decode.BOMB_GUARD_PIXELS == 89_478_485
  assert cli.parse(evaluate.Config, ['prog', '--model', 'm', '--images', 'a'])[0].max_pixels == 89_478_485
  assert cli.parse(app.Config, ['prog', '--model', 'm'])[0].max_pixels == service.REQUEST_MAX_PIXELS == 30_000_000
  helps = {c: next(f.metadata['help'] for f, name, _ in cli.flag_fields(c) if name == 'max-pixels')
           for c in (colorize.Config, evaluate.Config, app.Config)}
  assert 'decompression-bomb guard' in helps[colorize.Config] == helps[evaluate.Config]
  assert 'budget per request' in helps[app.Config]


def test_a_missing_model_stops_the_command_line_before_any_work(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'serving.colorize', 'photo.jpg', '--output', str(tmp_path)],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1 and 'Flag --model must have a value other than None' in proc.stderr
  assert not list(tmp_path.iterdir())
