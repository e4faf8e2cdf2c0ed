"""The Beam graph of the preprocessing job: list, group paths into work units, then per unit read, decode,
letterbox to Lab, embed and write; assemble the shards; write failures.jsonl and metadata.json.

The work units, their commit and the shard assembly are in pipeline/units.py (why: its docstring and
BUILD_NOTES.md, Preprocessing at scale). pipeline/preprocess.py is its command line. Classes live here, not in
the module run as __main__, because workers (Dataflow, or local multi-processing) unpickle them by module name.
"""
import functools
import json
import posixpath
import zlib

import apache_beam as beam
from absl import app
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipeline import config, resume, schema, shards, sources
from pipeline import units as units_
from pipeline.embed_handler import EmbedderHandler

NAMESPACE = units_.NAMESPACE
# Sources per compressed blob while a unit's paths are gathered: 32 lines of a unit (paths from scattered folders)
# compress to about a quarter; at ImageNet's 1.28 M inputs unit formation holds 0.28 GiB (0.40 without; BUILD_NOTES).
PACK = 32


class ListPattern(beam.DoFn):
  """A file pattern -> the path of every file it matches (one listing call per pattern); a chunk of paths that
  sources.child_patterns listed (bytes) -> them. Paths and patterns as Beam can carry them (sources.carried)."""

  def process(self, pattern):
    if isinstance(pattern, bytes):
      yield from sources.listed_paths(pattern)
    else:
      yield from (sources.carried(m.path) for m in FileSystems.match([sources.uncarried(pattern)])[0].metadata_list)


def labelled_source(path, root):
  """The preprocessing job's Source of a listed path: its key relative to its input root, its ImageNet label."""
  rel = posixpath.relpath(path, root) if root else path
  synset, label = sources.label_of(path)
  return sources.Source(path, rel, synset, label)


def _files(pipeline, inputs, name, make_source=labelled_source):
  """PCollection of Source for files, from patterns (read lazily by the workers); `name` prefixes the labels;
  make_source(path, input root) -> Source.

  A folder is listed in parallel, one pattern per immediate child (ImageNet's train folder: 1,000 synset
  folders), so no worker lists 1.28 M objects alone; a glob or a single file is one listing.
  """
  expanded = [sources.expand(i) for i in inputs]
  outputs = []
  for i, (pattern, root, images_only) in enumerate(expanded):
    if images_only:
      patterns = (pipeline | f'{name}Root{i}' >> beam.Create([root])
                  | f'{name}Children{i}' >> beam.FlatMap(sources.child_patterns)
                  | f'{name}SpreadListing{i}' >> beam.Reshuffle())
    else:
      patterns = pipeline | f'{name}Pattern{i}' >> beam.Create([pattern])
    outputs.append(patterns
                   | f'{name}Match{i}' >> beam.ParDo(ListPattern())
                   | f'{name}Images{i}' >> beam.Filter(
                       lambda path, keep_all: keep_all or sources.is_image_name(path), not images_only)
                   | f'{name}Source{i}' >> beam.Map(make_source, root))
  return outputs | f'{name}AllFiles' >> beam.Flatten()


class _Digest(beam.CombineFn):
  """(count, sum of key hashes mod 2^64) of the listing: equal for the same set of inputs in any order."""

  def create_accumulator(self):
    return 0, 0

  def add_input(self, acc, src):
    return acc[0] + 1, (acc[1] + shards.key_hash(src.relative_key)) % 2 ** 64

  def merge_accumulators(self, accs):
    accs = list(accs)
    return sum(a[0] for a in accs), sum(a[1] for a in accs) % 2 ** 64

  def extract_output(self, acc):
    return acc


class _UnitSources(beam.CombineFn):
  """The Sources of one unit -> [Source] sorted by key. What a runner holds while it gathers them is zlib blobs
  of PACK JSON lines, not a Python object per input: a local runner keeps every accumulator of a bundle (which
  may be the whole listing) until the bundle ends, then what crosses the group-by until every input is listed."""

  def create_accumulator(self):
    return []

  def add_input(self, acc, src):
    acc.append(json.dumps([src.key, src.relative_key, src.synset, src.label]).encode())  # data: None for files
    if len(acc) >= PACK and _is_line(acc[-PACK]) and (len(acc) == PACK or not _is_line(acc[-PACK - 1])):
      acc[-PACK:] = [zlib.compress(b'\n'.join(acc[-PACK:]), 1)]  # the last PACK items were all lines
    return acc

  def compact(self, acc):
    lines = [x for x in acc if _is_line(x)]
    return [x for x in acc if not _is_line(x)] + ([zlib.compress(b'\n'.join(lines), 1)] if lines else [])

  def merge_accumulators(self, accs):
    return [x for acc in accs for x in acc]

  def extract_output(self, acc):
    lines = [line for x in acc for line in ([x] if _is_line(x) else zlib.decompress(x).split(b'\n'))]
    return sorted((sources.Source(*json.loads(line)) for line in lines), key=lambda s: s.key)


def _is_line(item):
  """A JSON line (b'[...'), else a zlib blob of them (b'x...')."""
  return item[:1] == b'['


def file_units(pipeline, inputs, output, num_units, unit_key, make_source=labelled_source):
  """(unit, [Source] sorted by key) for file inputs; only paths cross the group-by, packed per unit. Any job on
  the work-unit contract: num_units(count of inputs) -> units; unit_key(Source) -> the string whose hash is its
  unit (the preprocessing job: the relative key; the colouring job: the output name, so that inputs whose
  outputs would collide meet in one unit); make_source as _files'.

  The inputs are listed twice: once to count and check them, then again to put each in its unit (whose number
  depends on the count). Keeping the first listing for the second step would hold an element per input in the
  runner between the two (the local runners keep it in memory: with the group-by of Sources, ~1 kB per input,
  1.1-1.4 GiB at ImageNet's 1.28 M; now ~80 bytes in-process, benchmarks/units.py); listing again costs a
  directory scan (on gs://, one list request per 1,000 objects).
  """
  digest = _files(pipeline, inputs, 'Count', make_source) | 'Digest' >> beam.CombineGlobally(_Digest())
  # One element: the listing is checked against the one a first run recorded before any unit runs.
  count = (pipeline | 'OnceInputs' >> beam.Create([None])
           | 'CheckInputs' >> beam.Map(lambda _, d, out: resume.check_inputs(out, d),
                                       beam.pvalue.AsSingleton(digest), output))

  def assign(src, n):
    return shards.unit_of(unit_key(src), num_units(n)), src

  return (_files(pipeline, inputs, 'Assign', make_source)
          | 'AssignUnit' >> beam.Map(assign, beam.pvalue.AsSingleton(count))
          | 'GroupUnits' >> beam.CombinePerKey(_UnitSources()))


def _relative_key(src):
  return src.relative_key


def _file_units(pipeline, cfg):
  """The preprocessing job's units: about --unit-size inputs each, a multiple of --num-shards of them."""
  return file_units(pipeline, cfg.inputs, cfg.output,
                    functools.partial(shards.num_units, num_shards=cfg.num_shards, unit_size=cfg.unit_size),
                    _relative_key)


def tfds_slices(cfg):
  """The TFDS split's file instructions cut into slices of at most --unit-size examples (at graph build)."""
  import tensorflow_datasets as tfds
  builder = tfds.builder(cfg.tfds, data_dir=cfg.tfds_data_dir)
  if cfg.tfds_manual_dir:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=cfg.tfds_manual_dir))
  if not any(isinstance(f, tfds.features.Image) for f in builder.info.features.values()):
    raise app.UsageError(f'TFDS dataset {cfg.tfds} has no image feature')
  if not builder.info.splits.total_num_examples:
    raise app.UsageError(f'TFDS dataset {cfg.tfds} has no examples in {builder.data_dir}; prepare it first '
                         '(--tfds-manual-dir for imagenet2012)')
  return shards.tfds_slices(builder.info.splits[cfg.tfds_split].file_instructions, cfg.unit_size)


def build(pipeline, cfg, info=None):
  """Adds the job of a resolved config.Config to `pipeline` (with cfg.tfds, its tfds_slices filled in); info:
  what metadata.json describes (default: config.metadata(cfg)).

  The same graph on every runner: list -> units -> [skip committed | (read TFDS) | prepare | embed | write unit]
  in one fused stage -> assemble shards -> failures.jsonl, metadata.json.
  """
  out = cfg.output
  command = config.command(cfg)
  record = {'command': command, 'fingerprint': resume.fingerprint(command)}   # metadata.json's 'job'
  if cfg.tfds:
    units = (pipeline | 'Slices' >> beam.Create(list(enumerate(cfg.tfds_slices)))
             | 'SpreadSlices' >> beam.Reshuffle())  # descriptors only: the bytes are read after it
  else:
    units = _file_units(pipeline, cfg)
  todo = units | 'SkipCommitted' >> beam.ParDo(units_.SkipCommitted(out)).with_outputs('done', main='todo')
  work = todo.todo
  if cfg.tfds:
    work = work | 'ReadTFDS' >> beam.ParDo(units_.ReadTFDSSlice(cfg))
  handler = KeyedModelHandler(EmbedderHandler(cfg.embedder, cfg.embedder_weights, cfg.embedder_precision,
                                              cfg.image_size))
  committed = (work
               | 'Prepare' >> beam.ParDo(units_.PrepareUnit(cfg))
               | 'Embed' >> RunInference(handler)
               | 'WriteUnit' >> beam.ParDo(units_.WriteUnit(out)))
  summaries = (todo.done, committed) | 'AllUnits' >> beam.Flatten()
  written = summaries | 'Written' >> beam.Map(lambda s: (s['unit'], s['written']))
  shard_list = [(split, k, cfg.num_shards if split == 'train' else cfg.val_shards)
                for split in schema.SPLITS
                for k in range(cfg.num_shards if split == 'train' else cfg.val_shards)]
  shard_names = (pipeline | 'Shards' >> beam.Create(shard_list)
                 | 'SpreadShards' >> beam.Reshuffle()
                 | 'Assemble' >> beam.ParDo(units_.AssembleShard(out), beam.pvalue.AsList(written)))
  totals = summaries | 'Totals' >> beam.CombineGlobally(units_.SumSummaries(units_.PREPROCESS_ZERO))
  failures = summaries | 'FailureLines' >> beam.FlatMap(lambda s: s['failures'])
  _ = (pipeline
       | 'Once' >> beam.Create([None])
       | 'WriteMetadata' >> beam.Map(units_.finalize, out, info or config.metadata(cfg), record,
                                     beam.pvalue.AsSingleton(totals), beam.pvalue.AsList(shard_names),
                                     beam.pvalue.AsList(failures)))
