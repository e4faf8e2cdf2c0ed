"""The page's colour-strength slider in a real headless Chromium (as tests/test_app_browser.py drives it): it starts at
the model's default, moving it (keyboard, mouse) colours the photo again through ?strength= (debounced), paler or more
vivid, with the hints still applied; a model without the control shows it disabled, saying why.

The distribution model (tests/serving_model.save_distribution) has a known colour distribution, so paler and more
vivid are measured on the image the page shows.
"""
import os
import pathlib
import urllib.parse
import urllib.request

import numpy as np
import pytest

import serving_model as sm
from serving import app, exported, server as http_server
from test_app_browser import GREEN, GREY, _click_at, _hue, _hue_gap, _settled, browser  # noqa: F401 (a fixture)


def _serve(base):
  return http_server.Background(app.make_app(app.Service(exported.Colorizer(str(base)))))


@pytest.fixture(scope='module')
def distribution_url(tmp_path_factory):
  base = tmp_path_factory.mktemp('distribution-hints')
  sm.save_distribution(str(base / '1'), hints=True)
  with _serve(base) as address:
    yield 'http://%s:%d/' % address


def _shown(page):
  """The colour photo as the page shows it: its pixels, decoded by Chromium."""
  rgba = page.locator('#coloured').evaluate('''img => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width, c.height).data)];
  }''')
  width, height, data = rgba
  return np.array(data, np.uint8).reshape(height, width, 4)[..., :3]


def _looked_at(rgb):
  """(the chroma away from the hint, the hue at the hint: (0.25, 0.5) of the photo)."""
  h, w = rgb.shape[:2]
  return sm.chroma(rgb[:, w // 2:]), _hue(rgb[h // 2 - 2:h // 2 + 3, w // 4 - 2:w // 4 + 3].reshape(-1, 3).mean(0))


def _open(browser, url, photo, shape):
  """A page on `url` with a grey photo of `shape` chosen, once the strength control shows; and the upload route's
  requests it makes: [(url, hints header)]."""
  photo.write_bytes(sm.png(np.full(shape, GREY, np.uint8)))
  page = browser.new_page()
  sent = []
  page.on('request', lambda r: urllib.parse.urlsplit(r.url).path == '/v1/colorize' and sent.append(
      (r.url, r.headers.get('x-colorizer-hints'))))
  page.goto(url)
  page.set_input_files('#file', str(photo))
  page.locator('#strength-section').wait_for(state='visible', timeout=60_000)
  return page, sent


def _strength_of(request_url):
  values = urllib.parse.parse_qs(urllib.parse.urlsplit(request_url).query).get('strength')
  return None if values is None else float(values[0])


def test_the_slider_makes_the_photo_paler_or_more_vivid_and_keeps_the_hints(browser, distribution_url, tmp_path):
  photo = tmp_path / 'grey.png'
  page, sent = _open(browser, distribution_url, photo, (192, 256))
  slider = page.locator('#strength')
  assert slider.is_enabled() and slider.input_value() == '0.5'           # the model's default, from /healthz
  assert page.locator('#strength-value').inner_text() == '0.50' and page.locator('#strength-note').is_hidden()
  assert page.locator('#strength-reset').is_disabled() and _strength_of(sent[0][0]) is None

  _click_at(page, 0.25, 0.5)                                             # a hint, green
  page.locator('#hint-colour').fill(GREEN)
  _settled(page)
  default = _shown(page)
  chroma, hue = _looked_at(default)
  assert _hue_gap(hue, _hue((42, 157, 58))) < 12

  slider.focus()
  for key, want, more in (('End', 1.0, True), ('Home', 0.0, False)):    # the keyboard: all of one, then the other
    page.keyboard.press(key)
    _settled(page)
    assert _strength_of(sent[-1][0]) == want and GREEN in sent[-1][1]    # ?strength=, the hint kept
    moved_chroma, moved_hue = _looked_at(_shown(page))
    assert (moved_chroma > chroma + 1) if more else (moved_chroma < chroma - 1), (key, moved_chroma, chroma)
    assert _hue_gap(moved_hue, _hue((42, 157, 58))) < 12, key           # the hint's colour, still there
    assert f'colour strength {want:.2f}' in page.locator('#status').inner_text()
    assert page.locator('#strength-value').inner_text() == f'{want:.2f}'

  before = len(sent)
  for _ in range(5):                                                     # quick steps: debounced
    page.keyboard.press('ArrowRight')
  _settled(page)
  assert 1 <= len(sent) - before < 5 and _strength_of(sent[-1][0]) == 0.05

  box = slider.bounding_box()                                            # the mouse, near the vivid end
  page.mouse.click(box['x'] + 0.9 * box['width'], box['y'] + box['height'] / 2)
  _settled(page)
  clicked = _strength_of(sent[-1][0])
  assert 0.8 < clicked < 1 and float(slider.input_value()) == clicked
  assert 'more vivid than the model' in slider.get_attribute('aria-valuetext')
  page.screenshot(path=str(pathlib.Path(os.environ.get('SCREENSHOT_DIR', tmp_path)) / 'colorizer-strength.png'),
                  full_page=True)
  with page.expect_download() as info:                                   # the bytes of the REST route's answer
    page.locator('#download').click()
  info.value.save_as(tmp_path / 'download.jpg')
  url, header = sent[-1]
  request = urllib.request.Request(url, photo.read_bytes(), {'X-Colorizer-Hints': header}, method='POST')
  with urllib.request.urlopen(request, timeout=60) as answer:
    assert (tmp_path / 'download.jpg').read_bytes() == answer.read()

  page.locator('#strength-reset').click()                                # back to the default: no ?strength=
  _settled(page)
  assert slider.input_value() == '0.5' and _strength_of(sent[-1][0]) is None
  assert np.array_equal(_shown(page), default)
  page.close()


def test_a_model_without_the_control_shows_the_slider_disabled_and_why(browser, tmp_path):
  base = tmp_path / 'mse'
  sm.save_pattern(str(base / '1'), hints=True)
  with _serve(base) as address:
    page, sent = _open(browser, 'http://%s:%d/' % address, tmp_path / 'grey.png', (60, 80))
    assert page.locator('#strength').is_disabled() and page.locator('#strength-reset').is_disabled()
    assert 'no colour-strength control' in page.locator('#strength-note').inner_text()
    assert page.locator('#strength-help').is_hidden() and page.locator('#strength-note').is_visible()
    assert [_strength_of(u) for u, _ in sent] == [None]
    assert page.locator('#hints-section').is_visible()                   # the rest of the page as before
    page.locator('#strength-section').screenshot(
        path=str(pathlib.Path(os.environ.get('SCREENSHOT_DIR', tmp_path)) / 'colorizer-no-strength.png'))
    page.close()
