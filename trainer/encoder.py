"""The unet's pretrained encoder: which classifier and weights a run uses (run.json's 'encoder') and the model's
arguments for it."""
from absl import logging

from pipeline import embedder
from trainer import model as model_lib


def resolve(cfg, meta):
  """What run.json records of a pretrained encoder (None for models without one), its weights checked.

  By default the encoder is the records' embedder with the same weights, found through metadata.json and checked
  against the sha256 recorded there, so `--data DIR --job-dir DIR` alone trains the default model.
  """
  if cfg.model not in model_lib.PRETRAINED:
    return None
  records = meta['embedder']
  name = cfg.encoder or records['name']
  if not cfg.encoder_weights and name == records['name']:
    embedder.check_weights(records)
    info = {key: records[key] for key in ('weights', 'weights_sha256') if key in records}
  else:
    info = embedder.describe(name, cfg.encoder_weights or 'imagenet', 'float32')   # its weights and sha256
    info = {key: info[key] for key in ('weights', 'weights_sha256') if key in info}
  if info['weights'] == 'random':
    logging.warning('the unet\'s encoder has RANDOM weights: it will colour no better than beta. Fine for tests; '
                    'for real training use imagenet weights or a weights file (--encoder-weights).')
  return dict(info, name=name)


def model_args(cfg, encoder):
  """model_lib.build's arguments for the unet's encoder and output stride (none for the other models)."""
  if not encoder:
    return {}
  return {'encoder': encoder['name'], 'encoder_weights': encoder['weights'], 'output_stride': cfg.output_stride,
          'fine_tune_encoder': bool(cfg.fine_tune_from)}
