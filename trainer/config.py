"""The trainer's configuration: one dataclass field per flag of `python -m trainer.task` (pipeline.cli), and the
export's; their checks, and the one default resolved from the run itself (--fine-tune-from).

A field made with `shapes_checkpoint=True` is part of what the checkpoints are (the variables they hold, or the
model they fit): a job directory resumes only when these agree (trainer.runinfo.describe, which also adds the
data's facts that do: the image size, the embedder and the resolved encoder). `dataclasses.asdict` of the resolved
config is what run.json records (trainer.runinfo).
"""
import dataclasses
from typing import Optional

from absl import app, logging

from pipeline import cli, embedder
from trainer import abbins, model as model_lib

STRATEGIES = ('auto', 'mirrored', 'multi_worker', 'one_device')
PRECISIONS = ('float32', 'mixed_float16', 'mixed_bfloat16')
OPTIMIZERS = ('adam', 'sgd')
SCHEDULES = ('constant', 'cosine')
TEMPERATURE_RANGE = dict(lower=0.01, upper=1.0)   # the annealed mean's, at training and at export
STRENGTH_RANGE = dict(lower=0.0, upper=1.0)
# The default fine-tuning step as a share of the run: the quality study's 500 of 2,500 steps.
FINE_TUNE_AFTER = 0.2


@dataclasses.dataclass
class Config:
  """`python -m trainer.task`'s flags; trainer.task.train(Config(data=..., job_dir=..., ...)) in code."""
  data: Optional[str] = cli.flag(None, 'Records directory written by python -m pipeline.preprocess (local or gs://).')
  job_dir: Optional[str] = cli.flag(None, 'Checkpoints, TensorBoard logs and exports go here (local or gs://).')
  epochs: int = cli.flag(10, 'Epochs to train.')
  steps_per_epoch: int = cli.flag(0, 'Steps per epoch; 0: one pass over the data.')
  # The global batch is this times the number of replicas.
  batch_size: int = cli.flag(16, 'Batch size per replica.')
  # unet: blue skies and green grass where fusion gives sepia (BENCHMARKS.md, Quality)
  model: str = cli.flag(
      'unet', 'unet (an ImageNet classifier\'s trunk as the encoder, fine-tuned from --fine-tune-from, with the '
      'embedding), fusion (Deep Koalarization, with the embedding) or beta (without).',
      choices=model_lib.MODELS, shapes_checkpoint=True)
  # The unet's encoder and its weights shape the checkpoints as resolved (run.json's 'encoder'), not as given.
  encoder: Optional[str] = cli.flag(None, 'unet: the classifier whose trunk is the encoder (default: the embedder '
                                    'the records were made with).', choices=tuple(embedder.SPECS))
  encoder_weights: Optional[str] = cli.flag(
      None, 'unet: the encoder\'s weights, imagenet, random or a Keras weights file of the full classifier '
      '(default: the records\' embedder\'s, checked against its sha256 in metadata.json).')
  output_stride: int = cli.flag(
      4, 'unet: predict ab at 1/4 of the canvas (as Zhang et al.), or at 1/2 (one more decoder level, from the '
      'encoder\'s first stage).', validator=(lambda v: v in (2, 4), '--output-stride must be 2 or 4'),
      shapes_checkpoint=True)
  # classification: more colour than mse and a smaller dCF (BENCHMARKS.md, Quality)
  loss: str = cli.flag('classification', 'mse on ab, or classification over ab bins.', choices=model_lib.LOSSES,
                       shapes_checkpoint=True)
  precision: str = cli.flag('float32', 'Keras dtype policy of the colorizer.', choices=PRECISIONS)
  strategy: str = cli.flag('auto', 'tf.distribute strategy.', choices=STRATEGIES)
  width: float = cli.flag(1.0, 'Multiplier of every layer\'s filter count (1.0: the paper\'s).', shapes_checkpoint=True)
  learning_rate: float = cli.flag(1e-3, 'The optimizer\'s learning rate (the peak, with --schedule cosine); a '
                                  'fine-tuned encoder\'s is --encoder-lr-scale times it.')
  schedule: str = cli.flag('cosine', 'Learning rate schedule over epochs x steps: constant, or cosine (linear '
                           'warm-up over the first 2 %, then cosine decay to 0).', choices=SCHEDULES)
  checkpoint_every: int = cli.flag(200, 'Checkpoint every N steps (and each epoch end).')
  log_every: int = cli.flag(10, 'Write training scalars to TensorBoard every N steps.')
  val_images: int = cli.flag(64, 'Validation images per epoch for the metrics.')
  sample_images: int = cli.flag(4, 'Validation samples shown in TensorBoard.')
  shuffle_buffer: int = cli.flag(1024, 'Records in the shuffle buffer.')
  # Classification class weights 1 / ((1 - mix) p + mix / Q), Zhang's 0.5: with it the unet's colourfulness already
  # matches the truth's (BENCHMARKS.md, Quality); fusion's study preferred 0.25, which brought it from 56 to 71 %.
  rebalance_mix: float = cli.flag(0.5, 'Classification loss class weights 1 / ((1 - mix) p(colour) + mix / Q): 1 is '
                                  'no rebalancing, smaller favours rare colours more.', lower=0.01, upper=1.0)
  zoom: float = cli.flag(0.5, 'Augmentation: zoom into a random square of side zoom..1 of each photo\'s long side '
                         '(1: no zoom).', lower=0.1, upper=1.0)
  temperature: float = cli.flag(
      abbins.TEMPERATURE, 'Classification: the annealed mean\'s temperature, for validation and the export (lower: '
      'more saturated, towards the most likely colour; 1: the mean). trainer.export --temperature changes it '
      'without training again.', **TEMPERATURE_RANGE)
  # The default of the colour strength users set per photo at serving time (abbins.Decoding).
  strength: float = cli.flag(
      abbins.DEFAULT_STRENGTH, 'Classification: the colour strength of validation and of the export\'s default, 0 '
      '(the palest and most accurate: each colour as often as it occurs) to 1 (the most vivid); 0.5 is the '
      'distribution as trained, at --temperature. Users change it per photo (serving.colorize --strength, the '
      'page\'s slider); trainer.export --strength changes the default.', **STRENGTH_RANGE)
  cache: bool = cli.flag(False, 'Cache the serialized records in memory after the first epoch.')
  seed: int = cli.flag(0, 'Shuffle seed (the same on every worker).')
  export: bool = cli.flag(True, 'Export a SavedModel when training ends.')
  # Orbit's steps_per_loop: the host syncs with the device between calls only.
  steps_per_loop: int = cli.flag(10, 'Train steps per tf.function call: the host waits for the device only '
                                 'between loops (ends early at --log-every/--checkpoint-every multiples).')
  xla: bool = cli.flag(False, 'Compile each replica\'s forward and backward pass with XLA.')
  # sgd: plain gradient descent (scale-sensitive; the all-reduce test uses it)
  optimizer: str = cli.flag('adam', 'adam, or sgd (plain gradient descent).', choices=OPTIMIZERS)
  # Simulated hint points (trainer/hints.py), so users can steer colours: on, as with no hint the result measured
  # no worse than the same recipe trained without them (BENCHMARKS.md, Hints)
  hints: bool = cli.flag(True, 'Train with random hint points from the truth (Zhang et al. 2017), so the export takes '
                         'the user\'s colours at chosen places (colorize_hints); --nohints: automatic only.',
                         shapes_checkpoint=True)
  # unet: from this step on the encoder trains too, at encoder_lr_scale x the learning rate (ramped up over a
  # tenth of the remaining steps), its batch norm kept in inference mode; 0: frozen throughout. None: a fifth of
  # the run (FINE_TUNE_AFTER), +0.25 dB PSNR over the frozen encoder on average (BENCHMARKS.md, Quality).
  # It shapes the checkpoints: a fine-tuned encoder has an optimizer of its own.
  fine_tune_from: Optional[int] = cli.flag(
      None, 'unet: train the encoder too from this step on (its batch norm stays in inference mode); 0: keep it '
      'frozen. Default: from a fifth of the run (a resumed run keeps the step it began with).', lower=0,
      shapes_checkpoint=True)
  encoder_lr_scale: float = cli.flag(0.1, 'unet with --fine-tune-from: the encoder\'s learning rate as a multiple of '
                                     'the decoder\'s, reached over a tenth of the remaining steps.', lower=0.0)


@dataclasses.dataclass
class ExportConfig:
  """`python -m trainer.export`'s flags."""
  job_dir: Optional[str] = cli.flag(None, 'The --job-dir of python -m trainer.task.')
  checkpoint: Optional[str] = cli.flag(None, 'Checkpoint to export (default: the latest in the job directory).')
  temperature: Optional[float] = cli.flag(None, 'Classification models: the annealed mean\'s temperature (default: '
                                          'the training run\'s); lower is more saturated.', **TEMPERATURE_RANGE)
  strength: Optional[float] = cli.flag(None, 'Classification models: the default colour strength, 0 (palest) to 1 '
                                       '(most vivid) (default: the training run\'s --strength).', **STRENGTH_RANGE)


def shaping_fields():
  """The names of Config's fields that shape the checkpoints, in field order."""
  return [f.name for f in dataclasses.fields(Config) if f.metadata.get('shapes_checkpoint')]


def check(cfg):
  """Refuse what the flags would refuse (for configs made in code) and what they cannot express."""
  cli.validate(cfg)
  if min(cfg.epochs, cfg.batch_size, cfg.checkpoint_every, cfg.log_every, cfg.steps_per_loop) < 1 \
      or cfg.steps_per_epoch < 0:
    raise app.UsageError('--epochs, --batch-size, --checkpoint-every, --log-every and --steps-per-loop must be '
                         '>= 1, --steps-per-epoch >= 0')
  _check_fine_tune(cfg)


def _check_fine_tune(cfg):
  if cfg.fine_tune_from and cfg.model not in model_lib.PRETRAINED:
    raise app.UsageError(f'--fine-tune-from trains a pretrained encoder: only --model {"/".join(model_lib.PRETRAINED)} '
                         f'has one (--model {cfg.model})')
  if cfg.fine_tune_from and cfg.precision == 'mixed_float16':
    # Two optimizers would keep two loss scales, and the loss is scaled by one of them.
    raise app.UsageError('--fine-tune-from does not support --precision mixed_float16; use mixed_bfloat16 or float32')


def resolve_fine_tune(cfg, total_steps, previous_run=None):
  """cfg with --fine-tune-from's default (None) made a step, checked: the one a resumed run began with
  (previous_run: its run.json, as trainer.runinfo.read gives it), else a fifth of total_steps for a model with a
  pretrained encoder, else 0 (frozen, or no encoder)."""
  if cfg.fine_tune_from is not None:
    step = cfg.fine_tune_from
  elif cfg.model not in model_lib.PRETRAINED:
    step = 0   # (a job dir of another model is then refused by trainer.runinfo.check_or_write, naming the model)
  elif previous_run is not None:
    step = previous_run['config'].get('fine_tune_from') or 0   # whatever its length is now: the checkpoints must match
  elif cfg.precision == 'mixed_float16':
    logging.warning('the unet\'s encoder stays frozen: fine-tuning it does not support --precision '
                    'mixed_float16 (use mixed_bfloat16 or float32 to train it too; --fine-tune-from 0 says frozen)')
    step = 0
  else:
    step = int(total_steps * FINE_TUNE_AFTER)
  cfg = dataclasses.replace(cfg, fine_tune_from=step)
  _check_fine_tune(cfg)
  return cfg
