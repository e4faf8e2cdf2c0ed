"""pipeline.cli: a config dataclass's fields become flags, and parsed flags become the config again."""
import dataclasses
from typing import Optional

import pytest
from absl import app, flags

from pipeline import cli


@dataclasses.dataclass
class Example:
  data: Optional[str] = cli.flag(None, 'Records directory.')
  image_size: int = cli.flag(256, 'Canvas side.', lower=32)
  rate: float = cli.flag(1e-3, 'Learning rate.', lower=0.0)
  stride: int = cli.flag(4, 'Output stride.', choices=(2, 4))
  kind: str = cli.flag('unet', 'Model.', choices=('unet', 'fusion'))
  start: Optional[int] = cli.flag(None, 'Step to start from; default: a fifth of the run.', lower=0)
  export: bool = cli.flag(True, 'Export at the end.')
  inputs: list = cli.flag([], 'Inputs; repeatable.', name='input')
  derived: int = 0


def test_every_field_with_help_is_a_flag_of_its_own_kind():
  names = {name: kind for _, name, kind in cli.flag_fields(Example)}
  assert names == {'data': str, 'image-size': int, 'rate': float, 'stride': int, 'kind': str, 'start': int,
                   'export': bool, 'input': list}


def test_parse_gives_the_config_and_defaults_stay_the_fields():
  cfg, rest = cli.parse(Example, ['prog', '--data', 'd', '--image-size=64', '--noexport',
                                  '--input', 'a', '--input', 'b', '--start', '0'])
  assert cfg == Example(data='d', image_size=64, export=False, inputs=['a', 'b'], start=0)
  assert rest == ['prog']
  assert cli.parse(Example, ['prog'])[0] == Example()


def test_known_only_leaves_the_other_flags_and_a_bad_value_names_its_flag():
  cfg, rest = cli.parse(Example, ['prog', '--kind', 'fusion', '--runner', 'DirectRunner'], known_only=True)
  assert cfg.kind == 'fusion' and rest == ['prog', '--runner', 'DirectRunner']
  for argv, flag in ((['--image-size', '16'], 'image-size'), (['--stride', '3'], 'stride'),
                     (['--kind', 'beta'], 'kind'), (['--rate', 'x'], 'rate'), (['--runner', 'x'], 'runner')):
    with pytest.raises(app.UsageError, match=flag):
      cli.parse(Example, ['prog'] + argv)


def test_as_flags_gives_the_command_line_of_a_config():
  cfg = Example(data='d', export=False, inputs=['a', 'b'], start=0, rate=0.5)
  assert cli.parse(Example, ['prog'] + cli.as_flags(cfg))[0] == cfg
  assert cli.as_flags(Example()) == []


def test_validate_refuses_in_code_what_the_flags_refuse():
  cli.validate(Example(start=0, stride=2))
  for kw, flag in ((dict(image_size=16), 'image-size'), (dict(stride=3), 'stride'), (dict(kind='beta'), 'kind'),
                   (dict(rate=-1.0), 'rate'), (dict(start=-1), 'start')):
    with pytest.raises(app.UsageError, match=flag):
      cli.validate(Example(**kw))


def test_the_flags_belong_to_the_module_that_defines_them():
  """absl's --help lists the main module's flags: an entry point's must be its own, not pipeline.cli's."""
  flag_values = flags.FlagValues()
  cli.define(Example, flag_values)
  assert {f.name for f in flag_values.get_key_flags_for_module(__name__)} == {
      name for _, name, _ in cli.flag_fields(Example)}
