"""A small line-and-point chart as a PNG, drawn with Pillow (the studies' figures; no plotting library needed).

  plot.chart('front.png', 'title', 'x label', 'y label',
             [plot.Series('unet', [(x, y, 'label'), ...], '#1f77b4', line=True)],
             hlines=[(22.59, 'grey baseline')], log_x=False)
"""
import dataclasses
import math

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 760, 480
LEFT, RIGHT, TOP, BOTTOM = 76, 24, 56, 56


@dataclasses.dataclass
class Series:
  name: str
  points: list            # (x, y) or (x, y, label)
  colour: str = '#1f77b4'
  line: bool = True
  error: list = None      # optional (low, high) of y per point: drawn as a vertical bar


def _ticks(low, high, count=6):
  """Round tick values covering [low, high]."""
  span = high - low or abs(high) or 1.0
  step = 10 ** math.floor(math.log10(span / count))
  for mult in (1, 2, 2.5, 5, 10):
    if span / (step * mult) <= count:
      step *= mult
      break
  first = math.ceil(low / step) * step
  return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(v):
  return f'{v:,.0f}' if abs(v) >= 100 or v == int(v) else f'{v:.3g}'


def chart(path, title, x_label, y_label, series, hlines=(), log_x=False, x_range=None, y_range=None):
  xs = [p[0] for s in series for p in s.points]
  ys = [v for s in series for p in s.points for v in [p[1]] + list(s.error[s.points.index(p)] if s.error else [])]
  ys += [h[0] for h in hlines]
  fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
  x0, x1 = x_range or (min(map(fx, xs)), max(map(fx, xs)))
  y0, y1 = y_range or (min(ys), max(ys))
  pad_x, pad_y = (x1 - x0) * 0.06 or 1.0, (y1 - y0) * 0.08 or 1.0
  x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y
  img = Image.new('RGB', (WIDTH, HEIGHT), 'white')
  draw = ImageDraw.Draw(img)
  font = ImageFont.load_default(size=13)
  px = lambda v: LEFT + (fx(v) - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)
  py = lambda v: HEIGHT - BOTTOM - (v - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM)
  draw.rectangle([LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM], outline='#444444')
  for t in _ticks(y0, y1):
    draw.line([LEFT, py(t), WIDTH - RIGHT, py(t)], fill='#eeeeee')
    draw.text((LEFT - 6, py(t)), _label(t), fill='#222222', font=font, anchor='rm')
  x_ticks = ([m * 10 ** e for e in range(math.floor(x0), math.ceil(x1) + 1) for m in (1, 2, 3, 5)
              if x0 <= math.log10(m * 10 ** e) <= x1] if log_x else _ticks(x0, x1))
  for t in x_ticks:
    draw.line([px(t), TOP, px(t), HEIGHT - BOTTOM], fill='#eeeeee')
    draw.text((px(t), HEIGHT - BOTTOM + 8), _label(t), fill='#222222', font=font, anchor='mt')
  for value, text in hlines:
    for x in range(LEFT, WIDTH - RIGHT, 8):
      draw.line([x, py(value), x + 4, py(value)], fill='#888888')
    draw.text((WIDTH - RIGHT - 4, py(value) - 3), text, fill='#555555', font=font, anchor='rb')
  for n, s in enumerate(series):
    pts = [(px(p[0]), py(p[1])) for p in s.points]
    if s.line and len(pts) > 1:
      draw.line(pts, fill=s.colour, width=2)
    for i, ((x, y), p) in enumerate(zip(pts, s.points)):
      if s.error:
        low, high = s.error[i]
        draw.line([x, py(low), x, py(high)], fill=s.colour, width=1)
      draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=s.colour)
      if len(p) > 2 and p[2]:
        # every other series labels below its points, so two series' labels at one x do not overlap
        draw.text((x + 6, y + 6 if n % 2 else y - 6), str(p[2]), fill='#222222', font=font,
                  anchor='lt' if n % 2 else 'ld')
  draw.text((WIDTH / 2, 10), title, fill='black', font=ImageFont.load_default(size=15), anchor='mt')
  draw.text((WIDTH / 2, HEIGHT - 18), x_label, fill='black', font=font, anchor='mt')
  label = Image.new('RGB', (HEIGHT, 18), 'white')
  ImageDraw.Draw(label).text((HEIGHT / 2, 2), y_label, fill='black', font=font, anchor='mt')
  img.paste(label.rotate(90, expand=True), (6, 0))
  legend_x = LEFT   # above the plot, in a row: it never hides a point
  for s in series:
    draw.line([legend_x, TOP - 12, legend_x + 20, TOP - 12], fill=s.colour, width=3)
    draw.text((legend_x + 26, TOP - 12), s.name, fill='black', font=font, anchor='lm')
    legend_x += 46 + draw.textlength(s.name, font=font)
  img.save(path, optimize=True)
  return path
