"""The published evaluation protocol's parts: the crop, the Fréchet distance (against closed forms), the classifier."""
import numpy as np
import pytest
import skimage.data

from serving import published


def test_the_crop_is_the_short_side_to_256_then_the_centre():
  rgb = np.zeros((300, 600, 3), np.uint8)
  rgb[:, 250:350] = 255          # a white band in the middle of a wide photo
  out = published.crop(rgb)
  assert out.shape == (256, 256, 3)
  # the wide photo becomes 256 x 512: the centre square holds the band (100 px -> ~85 px) in its middle
  column = out[128, :, 0]
  assert column[128] == 255 and column[5] == 0 and column[-5] == 0
  assert 80 <= (column > 127).sum() <= 90
  assert published.crop(skimage.data.camera()[:100, :100, None].repeat(3, -1)).shape == (256, 256, 3)


def test_the_frechet_distance_matches_closed_forms():
  # equal Gaussians: 0; 1-D: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s; diagonal: the same per axis
  assert published.frechet_distance([1.0, 2.0], np.eye(2), [1.0, 2.0], np.eye(2)) == pytest.approx(0.0, abs=1e-9)
  assert published.frechet_distance(3.0, 4.0, 1.0, 9.0) == pytest.approx(4.0 + (2.0 - 3.0) ** 2)
  a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
  assert published.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
  # a rotated pair (commuting, not diagonal): the same value, since the distance is invariant under rotation
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
  assert published.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T) == \
      pytest.approx(expected)


def test_fitted_gaussians_of_samples_approach_the_closed_form():
  rng = np.random.default_rng(1)
  x = rng.normal([0.0, 0.0], [1.0, 2.0], size=(200_000, 2))
  y = rng.normal([1.0, 0.0], [2.0, 2.0], size=(200_000, 2))
  got = published.frechet_distance(*published.gaussian(x), *published.gaussian(y))
  assert got == pytest.approx(1.0 + (1.0 - 2.0) ** 2 + 0.0, abs=0.03)


@pytest.mark.shared
def test_the_classifier_names_imagenet_photos(shared_imagenet, mobilenet_weights):
  from pipeline import decode, sources
  classifier = published.Classifier(str(mobilenet_weights))
  photos = sorted(shared_imagenet.iterdir())[:: 50][:20]
  crops = [published.crop(decode.decode(p.read_bytes())[0]) for p in photos]
  labels = np.array([sources.label_of(p.name)[1] for p in photos])
  assert (classifier.top1(np.stack(crops)) == labels).mean() >= 0.7   # 87.8 % top-1 on the sample (its README)


def test_measures_that_cannot_be_had_say_how(tmp_path):
  with pytest.raises(published.Unavailable, match='--fid-weights'):
    published.FidFeatures(str(tmp_path / 'missing.weights.h5'))
