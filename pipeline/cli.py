"""Command lines from config dataclasses: one field is one flag (its name, type, default and help), for every entry
point of every stage, as Model Garden and big_vision keep one config object and flags only at the entry point.

  @dataclasses.dataclass
  class Config:
    output: Optional[str] = cli.flag(None, 'Output directory (local or gs://).')
    image_size: int = cli.flag(256, 'Side of the square letterbox canvas.', lower=32)
    embedder: str = cli.flag('mobilenet_v2', 'Frozen ImageNet classifier.', choices=('mobilenet_v2', ...))
    inputs: list = cli.flag([], 'Folder, glob or gs:// prefix; repeatable.', name='input')
    derived: int = 0          # no help: not a flag

  if __name__ == '__main__':
    cli.run(main, Config)     # main(cfg, argv): the flags on absl's FLAGS, so --help lists them

  cfg, rest = cli.parse(Config, argv)   # anywhere else (tests, run(argv) APIs): a FlagValues of its own

A field's flag is its name with dashes (`image_size` -> --image-size) unless `name` says otherwise; its kind
comes from the annotation: str, int, float, bool (--x / --nox), Optional[...] of those (default None), list
(a repeatable string flag). `dataclasses.asdict(cfg)` is then the whole configuration, the thing a run records.
"""
import dataclasses
import sys
import typing

from absl import app, flags

FLAGS = flags.FLAGS
# The flags define() makes belong to the module that calls it (or run): --help lists that entry point's flags.
flags.disclaim_key_flags()


def flag(default, help, *, choices=None, lower=None, upper=None, name=None, validator=None, **extra):  # noqa: A002
  """A dataclass field that is also a flag. validator: (predicate, message) checked when the flags are parsed;
  extra: more metadata for the config's own use (e.g. which fields shape a checkpoint), kept in field.metadata."""
  metadata = dict(extra, help=help, choices=choices, lower=lower, upper=upper, name=name, validator=validator)
  if isinstance(default, list):
    return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


def flag_fields(cls):
  """(field, flag name, kind) of each field of cls that is a flag; kind is str, int, float, bool or list."""
  hints = typing.get_type_hints(cls)
  out = []
  for f in dataclasses.fields(cls):
    if 'help' not in f.metadata:
      continue
    kind = hints[f.name]
    if typing.get_origin(kind) is typing.Union:   # Optional[X]
      kind = next(a for a in typing.get_args(kind) if a is not type(None))
    kind = typing.get_origin(kind) or kind        # list[str] -> list
    if kind not in (str, int, float, bool, list):
      raise TypeError(f'{cls.__name__}.{f.name}: a flag must be str, int, float, bool or list, not {kind}')
    out.append((f, f.metadata['name'] or f.name.replace('_', '-'), kind))
  return out


def _default(f):
  return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def define(cls, flag_values=FLAGS):
  """Define one flag per flag field of cls on flag_values."""
  for f, name, kind in flag_fields(cls):
    m, default = f.metadata, _default(f)
    kw = dict(flag_values=flag_values)
    if kind is list:
      flags.DEFINE_multi_string(name, default, m['help'], **kw)
    elif kind is bool:
      flags.DEFINE_boolean(name, default, m['help'], **kw)
    elif m['choices'] is not None and kind is str:
      flags.DEFINE_enum(name, default, list(m['choices']), m['help'], **kw)
    elif kind is str:
      flags.DEFINE_string(name, default, m['help'], **kw)
    else:
      define_number = flags.DEFINE_integer if kind is int else flags.DEFINE_float
      define_number(name, default, m['help'], lower_bound=m['lower'], upper_bound=m['upper'], **kw)
      if m['choices'] is not None:
        choices = tuple(m['choices'])
        flags.register_validator(name, lambda v, c=choices: v is None or v in c,
                                 message=f'--{name} must be one of {", ".join(map(str, choices))}',
                                 flag_values=flag_values)
    if m['validator']:
      predicate, message = m['validator']
      flags.register_validator(name, predicate, message=message, flag_values=flag_values)
    if m.get('required'):   # flag(..., required=True): absl refuses a command line without it (default None)
      flags.mark_flag_as_required(name, flag_values)


def from_flags(cls, flag_values=FLAGS, **extra):
  """The config of cls whose flag fields hold the parsed flags' values (`extra`: non-flag fields)."""
  values = {f.name: flag_values[name].value for f, name, _ in flag_fields(cls)}
  for f, name, kind in flag_fields(cls):
    if kind is list:
      values[f.name] = list(values[f.name] or [])
  return cls(**values, **extra)


def parse(cls, argv, known_only=False):
  """(config, the arguments left: argv[0] and, with known_only, the flags cls does not define).

  A FlagValues of its own each call, so that callers in one process (tests, benchmarks) cannot collide, and
  a bad value raises app.UsageError naming the flag."""
  flag_values = flags.FlagValues()
  define(cls, flag_values)
  try:
    rest = flag_values(list(argv), known_only=known_only)
  except flags.Error as e:
    raise app.UsageError(str(e)) from None
  return from_flags(cls, flag_values), rest


def run(main, cls, known_only=False):
  """absl's app.run for an entry point: define cls's flags on FLAGS, parse, call main(config, argv).

  known_only: flags cls does not define stay in argv (the Beam job hands them to PipelineOptions)."""
  define(cls)
  app.run(lambda argv: main(from_flags(cls), argv), **({'flags_parser': _parse_known} if known_only else {}))


def _parse_known(argv):
  """FLAGS(argv, known_only=True), and a bad value reported as absl reports it without known_only (a custom
  parser's flags.Error would otherwise reach the user as a traceback)."""
  try:
    return FLAGS(argv, known_only=True)
  except flags.Error as e:
    sys.stderr.write(f'FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull to see help on flags.\n')
    sys.exit(1)


def as_flags(cfg):
  """The command-line flags that give cfg (defaults left out): for messages and for running a stage again."""
  out = []
  for f, name, kind in flag_fields(type(cfg)):
    value = getattr(cfg, f.name)
    if value == _default(f):
      continue
    if kind is list:
      out += [f'--{name}={v}' for v in value]
    elif kind is bool:
      out.append(f'--{name}' if value else f'--no{name}')
    elif value is not None:
      out.append(f'--{name}={value}')
  return out


def validate(cfg):
  """Check a config made in code, not parsed, as its flags would check it (choices, bounds, validators):
  app.UsageError names the flag. Library entry points call it, so a value the command line refuses is refused."""
  for f, name, kind in flag_fields(type(cfg)):
    value, m = getattr(cfg, f.name), f.metadata
    if value is None or kind is list:
      continue
    if m['choices'] is not None and value not in m['choices']:
      raise app.UsageError(f'--{name} must be one of {", ".join(map(str, m["choices"]))}, not {value!r}')
    if (m['lower'] is not None and value < m['lower']) or (m['upper'] is not None and value > m['upper']):
      bounds = [f'>= {m["lower"]}'] * (m['lower'] is not None) + [f'<= {m["upper"]}'] * (m['upper'] is not None)
      raise app.UsageError(f'--{name} must be {" and ".join(bounds)}, not {value!r}')
    if m['validator'] and not m['validator'][0](value):
      raise app.UsageError(m['validator'][1])
