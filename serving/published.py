"""The evaluation protocol the field publishes, so a model trained at scale can be put beside the published tables.

DDColor's table (ImageNet val, first 5k; also used for DeOldify, Zhang 2016 and the others) resizes each photo's
short side to 256 and centre-crops 256 x 256, then reports FID, colourfulness (CF) and its gap to the truth's
(dCF), and PSNR; Zhang et al. 2016 add a semantic test: an ImageNet classifier's top-1 accuracy on the coloured
photos, beside the grey ones and the truth (VGG-16 there: grey 52.7 %, theirs 56.0 %, truth 68.3 %).
serving.evaluate --protocol published applies this module to every photo (`crop`) and to the whole set (FID,
the classifier test). The classifier here is Keras' MobileNetV2 (its ImageNet weights: Keras' download or a local
file); FID uses Keras' InceptionV3 pool features, which are close to but not the TF-slim 2015 graph that
pytorch-fid and the published FIDs use: compare FIDs within this project, and the published ones only roughly.
"""
import os
import warnings

import numpy as np
import scipy.linalg
from PIL import Image

from pipeline import embedder

CROP = 256
CLASSIFIER_CROP = 224          # the classifier sees the centre 224 of the 256 crop, as ImageNet's eval does
FID_SIZE = 299


class Unavailable(RuntimeError):
  """A measure that cannot be computed here (weights that cannot be had); the message says how to get it."""


def crop(rgb, size=CROP):
  """uint8 [H, W, 3] -> [size, size, 3]: the short side resized to `size` (bicubic), then the centre square."""
  img = Image.fromarray(rgb)
  scale = size / min(img.size)
  w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
  img = img.resize((w, h), Image.BICUBIC)
  left, top = (w - size) // 2, (h - size) // 2
  return np.asarray(img.crop((left, top, left + size, top + size)))


def frechet_distance(mu1, sigma1, mu2, sigma2):
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)): the Fréchet distance of two Gaussians (FID's formula)."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  # Fewer photos than features (2048) make the covariances singular: sqrtm warns, and its result is still what
  # pytorch-fid reports; FID is biased upwards for small sets, so compare FIDs only at equal set sizes.
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():   # a product sqrtm cannot take: nudge it, as pytorch-fid does
      offset = np.eye(len(sigma1)) * 1e-6
      root = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  root = root.real   # tiny imaginary parts are numerical noise of sqrtm
  return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


def gaussian(features):
  """float [N, D] -> (mean [D], covariance [D, D]) as FID fits them (sample covariance)."""
  features = np.asarray(features, np.float64)
  return features.mean(0), np.cov(features, rowvar=False)


def _keras_model(build, what, flag):
  try:
    return build()
  except Exception as e:  # Keras raises a bare Exception ("URL fetch failure") when offline
    raise Unavailable(f'{what}: its ImageNet weights cannot be had ({str(e).splitlines()[0][:160]}); '
                      f'pass {flag} with a local Keras weights file') from None


class Classifier:
  """An ImageNet classifier's top-1 class of 256 x 256 crops (MobileNetV2; weights 'imagenet' or a file of the
  full 1000-class model)."""

  def __init__(self, weights='imagenet'):
    try:
      self._model = embedder.classifier('mobilenet_v2', weights)
    except embedder.EmbedderError as e:
      raise Unavailable(f'the classifier test: {e}') from None
    import keras
    self._preprocess = keras.applications.mobilenet_v2.preprocess_input

  def top1(self, crops, batch_size=32):
    """uint8 [N, 256, 256, 3] -> int [N]."""
    margin = (CROP - CLASSIFIER_CROP) // 2
    out = []
    for start in range(0, len(crops), batch_size):
      x = np.asarray(crops[start:start + batch_size], np.float32)[:, margin:margin + CLASSIFIER_CROP,
                                                                  margin:margin + CLASSIFIER_CROP]
      out.append(np.argmax(self._model.predict_on_batch(self._preprocess(x)), axis=-1))
    return np.concatenate(out) if out else np.zeros([0], np.int64)


class FidFeatures:
  """InceptionV3's 2048-d pool features of 256 x 256 crops (resized to 299, bilinear), for FID."""

  def __init__(self, weights='imagenet'):
    import keras
    self._keras = keras
    # 'random' (no download, meaningless distances) is for tests, as the embedder's.
    known = {'imagenet': 'imagenet', 'random': None}
    if weights not in known and '://' not in weights and not os.path.exists(weights):
      raise Unavailable(f'FID: no weights file {weights}; pass --fid-weights with the file of Keras\' InceptionV3 '
                        'without its top (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5), imagenet, '
                        'or none')
    self._model = _keras_model(lambda: keras.applications.InceptionV3(
        include_top=False, pooling='avg', weights=known[weights] if weights in known else
        embedder.local_weights(weights)), 'FID (InceptionV3)', '--fid-weights')

  def __call__(self, crops, batch_size=32):
    import tensorflow as tf
    out = []
    for start in range(0, len(crops), batch_size):
      x = tf.image.resize(np.asarray(crops[start:start + batch_size], np.float32), [FID_SIZE, FID_SIZE])
      out.append(self._model.predict_on_batch(self._keras.applications.inception_v3.preprocess_input(x)))
    return np.concatenate(out) if out else np.zeros([0, 2048], np.float32)


class SetMeasures:
  """The published protocol's measures of a whole set, fed batch by batch (memory flat in the number of photos):
  FID of the coloured and of the grey crops against the truth's, and the classifier's top-1 accuracy on the grey,
  coloured and true crops of the photos whose ImageNet synset is known (pipeline.sources.label_of).

  classifier_weights / fid_weights: 'imagenet' (Keras' download), a local or gs:// weights file, 'random' (tests)
  or 'none'. A
  measure whose weights cannot be had is left out with one line in `notes` saying why and how to get it."""

  SYSTEMS = ('model', 'grey_baseline', 'truth')

  def __init__(self, classifier_weights='imagenet', fid_weights='imagenet'):
    self.notes = []
    self._classifier = self._make(Classifier, classifier_weights, 'the classifier test', '--classifier-weights')
    self._fid = self._make(FidFeatures, fid_weights, 'FID', '--fid-weights')
    self._features = {s: [] for s in self.SYSTEMS}
    self._hits = {s: 0 for s in self.SYSTEMS}
    self.labelled = 0

  def _make(self, build, weights, what, flag):
    if weights == 'none':
      self.notes.append(f'{what} not computed: {flag} none')
      return None
    try:
      return build(weights)
    except Unavailable as e:
      self.notes.append(f'{what} not computed: {e}')
      return None

  def add(self, crops, labels):
    """crops: {system: uint8 [N, 256, 256, 3]} for SYSTEMS; labels: int [N], ImageNet class or -1 (unknown)."""
    labels = np.asarray(labels)
    known = labels >= 0
    self.labelled += int(known.sum())
    for system in self.SYSTEMS:
      batch = np.asarray(crops[system])
      if self._fid is not None:
        self._features[system].append(self._fid(batch))
      if self._classifier is not None and known.any():
        self._hits[system] += int((self._classifier.top1(batch[known]) == labels[known]).sum())

  def summary(self):
    """{'fid': {model, grey_baseline} or absent, 'top1': {model, grey_baseline, truth, 'photos'} or absent,
    'notes': [...]}; top-1 in % of the labelled photos."""
    out = {'notes': list(self.notes)}
    if self._fid is not None and self._features['truth']:
      truth = gaussian(np.concatenate(self._features['truth']))
      out['fid'] = {s: frechet_distance(*gaussian(np.concatenate(self._features[s])), *truth)
                    for s in ('model', 'grey_baseline')}
    if self._classifier is not None:
      if self.labelled:
        out['top1'] = {**{s: 100.0 * self._hits[s] / self.labelled for s in self.SYSTEMS}, 'photos': self.labelled}
      else:
        out['notes'].append('the classifier test: no photo\'s ImageNet synset is known (names like '
                            'n01440764_tench.JPEG or a n01440764/ folder carry it)')
    return out
