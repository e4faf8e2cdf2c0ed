"""The evaluation's HTML report: one self-contained file (images inline), readable offline and easy to share."""
import base64
import html
import io
import posixpath

from PIL import Image

_ROWS = (('PSNR (dB)', 'psnr', '{:.2f}', 'higher is better'), ('SSIM', 'ssim', '{:.4f}', 'higher is better'),
         ('AuC', 'auc', '{:.4f}', 'raw ab accuracy, 0..150'), ('AuC rebalanced', 'auc_rebalanced', '{:.4f}',
                                                               'rare colours weigh more'),
         ('Colourfulness', 'cf_pred', '{:.2f}', 'Hasler & Süsstrunk'),
         ('ΔCF', 'delta_cf', '{:.2f}', '|CF − CF of the truth|, lower is better'))
_CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1.5rem;color:#1d1d1f}
table{border-collapse:collapse;margin:1rem 0}td,th{padding:.35rem .8rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child,td.note{text-align:left}.note{color:#6e6e73;font-size:.85rem}
.warn{color:#b3261e;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(3,1fr);gap:.5rem;align-items:start}
.grid img{width:100%;height:auto;max-height:360px;object-fit:contain;border-radius:6px}
.grid h3{grid-column:1/-1;margin:1rem 0 0;font-size:.95rem}
.head{font-weight:600;text-align:center}
@media(max-width:600px){.grid{gap:.2rem}}
"""


def _data_uri(rgb):
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format='JPEG', quality=85)
  return 'data:image/jpeg;base64,' + base64.b64encode(buf.getvalue()).decode()


def _fmt(fmt, value):
  return '—' if value is None or value != value else fmt.format(value)   # NaN != NaN


def render(doc, samples, test_model=''):
  """doc: evaluate's summary.json content; samples: (path, grey, model, truth thumbnails, row)."""
  e = html.escape
  m = doc['metrics']
  out = ['<!doctype html><html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         f'<title>Colorizer evaluation</title><style>{_CSS}</style></head><body>',
         '<h1>Colorizer evaluation</h1>',
         f'<p>Model <code>{e(str(doc["model"]["path"]))}</code> (version {doc["model"]["version"]}, '
         f'{e(str(doc["model"].get("model")))} / {e(str(doc["model"].get("loss")))}, step '
         f'{e(str(doc["model"].get("step")))}). {doc["images"]} image(s) evaluated, {len(doc["skipped"])} '
         f'skipped, {len(doc["failed"])} failed.</p>']
  if test_model:
    out.append(f'<p class="warn">{e(test_model)}</p>')
  out.append('<table><tr><th>metric</th><th>model</th><th>grey baseline</th><th></th></tr>')
  for label, key, fmt, note in _ROWS:
    out.append(f'<tr><td>{label}</td><td>{_fmt(fmt, m["model"].get(key))}</td>'
               f'<td>{_fmt(fmt, m["grey_baseline"].get(key))}</td><td class="note">{note}</td></tr>')
  out.append(f'<tr><td>Colourfulness of the truth</td><td>{_fmt("{:.2f}", m["model"].get("cf_true"))}</td>'
             '<td></td><td></td></tr></table>')
  out.append('<p class="note">Metrics are means over images (trainer/metrics.py). The grey baseline is each '
             'photo\'s own lightness with a = b = 0.</p>')
  sets = doc.get('set_metrics') or {}
  if doc.get('protocol') == 'published':
    out.append('<p>Published protocol: each photo\'s short side resized to 256, its centre 256 × 256 cropped.')
    if 'fid' in sets:
      out.append(f' FID: model {sets["fid"]["model"]:.2f}, grey baseline {sets["fid"]["grey_baseline"]:.2f}.')
    if 'top1' in sets:
      t = sets['top1']
      out.append(f' Classifier top-1 ({t["photos"]} photos): model {t["model"]:.1f} %, grey {t["grey_baseline"]:.1f} '
                 f'%, truth {t["truth"]:.1f} %.')
    out.append('</p>')
    out += [f'<p class="warn">Not measured: {e(note)}</p>' for note in sets.get('notes', [])]
  if samples:
    out.append('<h2>Samples</h2><div class="grid"><div class="head">grey input</div><div class="head">model'
               '</div><div class="head">truth</div>')
    for path, grey, pred, truth, row in samples:
      out.append(f'<h3>{e(posixpath.basename(path))} <span class="note">{row["width"]}×{row["height"]} · '
                 f'model PSNR {row["model_psnr"]:.2f}, AuC {row["model_auc"]:.3f} · grey PSNR '
                 f'{row["grey_baseline_psnr"]:.2f}, AuC {row["grey_baseline_auc"]:.3f}</span></h3>')
      out += [f'<img alt="{label}" src="{_data_uri(img)}">'
              for label, img in (('grey input', grey), ('model', pred), ('truth', truth))]
    out.append('</div>')
  for title, items in (('Skipped', doc['skipped']), ('Failed', doc['failed'])):
    if items:
      out.append(f'<details><summary>{title} ({len(items)})</summary><ul>')
      out += [f'<li><code>{e(i["path"])}</code>: {e(i["reason"])}</li>' for i in items]
      out.append('</ul></details>')
  out.append('</body></html>')
  return '\n'.join(out)
