// The page's only script: send the chosen photo to POST /v1/colorize and show the JPEG that comes back.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const drop = $('drop'), input = $('file'), status = $('status'), result = $('result');
  const original = $('original'), coloured = $('coloured'), download = $('download'), spinner = $('spinner');
  const compareSection = $('compare-section'), compare = $('compare'), stack = $('compare-stack');
  const before = $('compare-before'), after = $('compare-after'), slider = $('compare-slider');
  const actual = $('actual-size');
  let limits = { max_bytes: Infinity };
  let urls = [];

  fetch('/healthz').then((r) => r.json()).then((h) => {
    limits = h;
    $('model-info').textContent = `Model ${h.model}, version ${h.version}`;
    document.querySelectorAll('.model-name').forEach((e) => { e.textContent = h.model; });
    $('metadata-link').href = `/v1/models/${encodeURIComponent(h.model)}/metadata`;
  }).catch(() => {});

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle('error', Boolean(isError));
  }

  function stem(name) {
    const dot = name.lastIndexOf('.');
    return dot > 0 ? name.slice(0, dot) : name || 'photo';
  }

  async function colorize(file) {
    if (!file) return;
    if (file.size > limits.max_bytes) {
      say(`${file.name} is ${file.size} bytes; this server takes at most ${limits.max_bytes}.`, true);
      return;
    }
    urls.forEach((u) => URL.revokeObjectURL(u));
    urls = [URL.createObjectURL(file)];
    original.src = urls[0];
    original.onload = () => { $('original-size').textContent = `${original.naturalWidth} × ${original.naturalHeight}`; };
    coloured.removeAttribute('src');
    download.hidden = true;
    compareSection.hidden = true;
    spinner.hidden = false;
    result.hidden = false;
    say(`Colouring ${file.name}…`);
    try {
      const response = await fetch('/v1/colorize', {
        method: 'POST', body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' },
      });
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`;
        try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
        throw new Error(message);
      }
      const url = URL.createObjectURL(await response.blob());
      urls.push(url);
      coloured.src = url;
      await coloured.decode().catch(() => {});
      download.href = url;
      download.download = `${stem(file.name)}-colour.jpg`;
      download.hidden = false;
      before.src = urls[0];
      after.src = url;
      compareSection.hidden = false;
      const note = response.headers.get('X-Colorizer-Note');
      say(note ? `Done. Note: ${note}.` : `Done: ${coloured.naturalWidth} × ${coloured.naturalHeight}.`);
    } catch (e) {
      say(`Could not colour ${file.name}: ${e.message}`, true);
    } finally {
      spinner.hidden = true;
    }
  }

  // Compare: the original over the colour photo, cut at the slider (a native range input: arrow keys, Home, End).
  function split() {
    stack.style.setProperty('--split', `${slider.value}%`);
    slider.setAttribute('aria-valuetext', `left ${slider.value}% original, right ${100 - slider.value}% in colour`);
  }
  slider.addEventListener('input', split);
  actual.addEventListener('click', () => {
    const on = actual.getAttribute('aria-pressed') !== 'true';
    actual.setAttribute('aria-pressed', String(on));
    compare.classList.toggle('actual', on);
  });
  split();

  input.addEventListener('change', () => colorize(input.files[0]));
  ['dragenter', 'dragover'].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add('over');
  }));
  ['dragleave', 'drop'].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.remove('over');
  }));
  drop.addEventListener('drop', (e) => colorize(e.dataTransfer.files[0]));
})();
