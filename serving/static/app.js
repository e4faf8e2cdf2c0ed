// The page's script (with strength.js, its colour-strength slider): send the chosen photo to POST /v1/colorize and
// show the JPEG that comes back; then let the user place hints ("this colour here") on it and set the colour
// strength, which re-colour the photo by themselves.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const drop = $('drop'), input = $('file'), status = $('status'), result = $('result');
  const original = $('original'), coloured = $('coloured'), download = $('download'), spinner = $('spinner');
  const compareSection = $('compare-section'), compare = $('compare'), stack = $('compare-stack');
  const before = $('compare-before'), after = $('compare-after'), slider = $('compare-slider');
  const actual = $('actual-size');
  const layer = $('hint-layer'), hintsSection = $('hints-section'), editor = $('hint-editor');
  const palette = $('palette'), picker = $('hint-colour'), hintName = $('hint-name'), hintCount = $('hint-count');
  const strengthSection = $('strength-section');
  const DEBOUNCE_MS = 120;   // after the last change, before the photo is sent again
  let limits = { max_bytes: Infinity, hints: false, suggests: false, max_hints: 100 };
  let photo = null, photoName = '', originalUrl = null, resultUrl = null;
  let generation = 0;        // one per chosen photo: answers about an older photo are dropped

  fetch('/healthz').then((r) => r.json()).then((h) => {
    limits = { ...limits, ...h };
    $('model-info').textContent = `Model ${h.model}, version ${h.version}`;
    document.querySelectorAll('.model-name').forEach((e) => { e.textContent = h.model; });
    $('metadata-link').href = `/v1/models/${encodeURIComponent(h.model)}/metadata`;
    strength.setModel(h.strength);
    if (resultUrl) showHintControls();
  }).catch(() => {});

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle('error', Boolean(isError));
  }

  function stem(name) {
    const dot = name.lastIndexOf('.');
    return dot > 0 ? name.slice(0, dot) : name || 'photo';
  }

  async function failure(response) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    return new Error(message);
  }

  function hintsJson(list) {   // the X-Colorizer-Hints header: 100 hints are ~5 kB (URL-encoded, twice that)
    const round = (v) => Math.round(v * 1e4) / 1e4;
    return JSON.stringify(list.map((h) => ({ x: round(h.x), y: round(h.y), colour: h.colour })));
  }

  async function post(path, query, body, hintList) {
    const headers = { 'Content-Type': body.type || 'application/octet-stream' };
    if (hintList && hintList.length) headers['X-Colorizer-Hints'] = hintsJson(hintList);
    const response = await fetch(query ? `${path}?${query}` : path, { method: 'POST', body, headers });
    if (!response.ok) throw await failure(response);
    return response;
  }

  async function show(response) {
    const url = URL.createObjectURL(await response.blob());
    const img = new Image();
    img.src = url;
    await img.decode().catch(() => {});   // swap in a decoded image: no flash of an empty frame
    coloured.src = url;
    await coloured.decode().catch(() => {});
    after.src = url;
    download.href = url;
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = url;
    placeLayer();
  }

  async function colorize(file) {
    if (!file) return;
    if (file.size > limits.max_bytes) {
      say(`${file.name} is ${file.size} bytes; this server takes at most ${limits.max_bytes}.`, true);
      return;
    }
    generation += 1;
    const mine = generation;
    clearTimeout(timer);
    clearHints();
    coloured.dataset.changes = coloured.dataset.shown = String(changes);
    [originalUrl, resultUrl].forEach((u) => u && URL.revokeObjectURL(u));
    photo = file; photoName = file.name; resultUrl = null;
    originalUrl = URL.createObjectURL(file);
    original.src = originalUrl;
    original.onload = () => { $('original-size').textContent = `${original.naturalWidth} × ${original.naturalHeight}`; };
    coloured.removeAttribute('src');
    download.hidden = true;
    compareSection.hidden = true;
    hintsSection.hidden = strengthSection.hidden = true;
    layer.hidden = true;
    spinner.hidden = false;
    result.hidden = false;
    say(`Colouring ${file.name}…`);
    try {
      const response = await post('/v1/colorize', strength.query(), file);
      if (mine !== generation) return;
      await show(response);
      download.download = `${stem(file.name)}-colour.jpg`;
      download.hidden = false;
      before.src = originalUrl;
      compareSection.hidden = false;
      showHintControls();
      const note = response.headers.get('X-Colorizer-Note');
      say(note ? `Done. Note: ${note}.` : `Done: ${coloured.naturalWidth} × ${coloured.naturalHeight}.`);
    } catch (e) {
      if (mine === generation) say(`Could not colour ${file.name}: ${e.message}`, true);
    } finally {
      if (mine === generation) spinner.hidden = true;
    }
  }

  // ------------------------------------------------------------------ hints
  // A hint is {x, y (0..1 of the photo from its left and top), colour '#rrggbb', marker (a button on the photo)}.
  // Every change (place, colour, move, delete) schedules one re-colouring of the whole photo with all the hints;
  // one request at a time: changes made meanwhile are sent together when it returns.
  let hints = [], selected = null;
  let changes = 0, sending = false, timer = null, changedAt = 0;
  const strength = window.colourStrength(() => changed());   // a move: a change like a hint's

  function showHintControls() {   // and the strength slider, once /healthz has said what the model has
    strengthSection.hidden = !(resultUrl && 'strength' in limits);
    const on = Boolean(limits.hints && resultUrl);
    hintsSection.hidden = !on;
    layer.hidden = !on;
    palette.hidden = !limits.suggests;
    placeLayer();
  }

  function placeLayer() {   // the layer covers exactly the displayed colour photo
    if (layer.hidden) return;
    layer.style.left = `${coloured.offsetLeft}px`;
    layer.style.top = `${coloured.offsetTop}px`;
    layer.style.width = `${coloured.offsetWidth}px`;
    layer.style.height = `${coloured.offsetHeight}px`;
  }
  window.addEventListener('resize', placeLayer);
  if (window.ResizeObserver) new ResizeObserver(placeLayer).observe(coloured);

  function describe(h) {
    const at = `${Math.round(h.x * 100)}% across, ${Math.round(h.y * 100)}% down`;
    return `Hint ${hints.indexOf(h) + 1}: ${h.colour}, ${at}`;
  }

  function drawHint(h) {
    h.marker.style.left = `${h.x * 100}%`;
    h.marker.style.top = `${h.y * 100}%`;
    h.marker.style.setProperty('--hint', h.colour);
    h.marker.setAttribute('aria-label', `${describe(h)}. Arrow keys move it, Delete removes it`);
  }

  function refreshList() {
    hints.forEach(drawHint);
    hintCount.textContent = hints.length ? `${hints.length} hint${hints.length > 1 ? 's' : ''}` : 'No hints yet';
    $('hints-clear').disabled = !hints.length;
    editor.hidden = !selected;
    if (selected) {
      hintName.textContent = describe(selected);
      picker.value = selected.colour;
      palette.querySelectorAll('.swatch').forEach((w) => {
        w.setAttribute('aria-pressed', String(w.dataset.colour === selected.colour));
      });
    }
  }

  function changed() {
    changes += 1;
    coloured.dataset.changes = String(changes);
    changedAt = performance.now();
    refreshList();
    clearTimeout(timer);
    timer = setTimeout(recolour, DEBOUNCE_MS);
  }

  async function recolour() {
    if (sending || !photo) return;
    const upTo = changes, since = changedAt, mine = generation, list = hints.slice(), query = strength.query();
    if (String(upTo) === coloured.dataset.shown) return;
    sending = true;
    coloured.setAttribute('aria-busy', 'true');
    const what = list.length ? ` with ${list.length} hint${list.length === 1 ? '' : 's'}` : '';
    say(`Colouring${what}${strength.label()}…`);
    try {
      const sent = performance.now();
      const response = await post('/v1/colorize', query, photo, list);
      if (mine !== generation) return;
      const requestMs = performance.now() - sent;
      await show(response);
      const total = performance.now() - since;
      coloured.dataset.shown = String(upTo);
      coloured.dataset.roundTripMs = total.toFixed(0);     // last change -> new photo on screen
      coloured.dataset.requestMs = requestMs.toFixed(0);   // the request alone
      say(`Coloured${what} in ${(total / 1000).toFixed(2)} s${strength.label()}.`);
    } catch (e) {
      if (mine === generation) {
        coloured.dataset.shown = String(upTo);
        say(`Could not colour ${photoName} with these hints${strength.label()}: ${e.message}`, true);
      }
    } finally {
      sending = false;
      coloured.removeAttribute('aria-busy');
      if (mine === generation && changes !== upTo) recolour();
    }
  }

  function sample(x, y) {   // the colour the photo has now at (x, y): a new hint's first colour
    try {
      const canvas = document.createElement('canvas');
      canvas.width = canvas.height = 1;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(coloured, Math.min(coloured.naturalWidth - 1, Math.floor(x * coloured.naturalWidth)),
        Math.min(coloured.naturalHeight - 1, Math.floor(y * coloured.naturalHeight)), 1, 1, 0, 0, 1, 1);
      const [r, g, b] = ctx.getImageData(0, 0, 1, 1).data;
      return `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
    } catch (e) {
      return '#808080';
    }
  }

  function select(h, focus) {
    selected = h;
    hints.forEach((o) => o.marker.classList.toggle('selected', o === h));
    hints.forEach((o) => o.marker.setAttribute('aria-pressed', String(o === h)));
    refreshList();
    if (h && focus) h.marker.focus();
    if (h) suggest(h);
  }

  function addHint(x, y) {
    if (hints.length >= limits.max_hints) {
      say(`At most ${limits.max_hints} hints per photo.`, true);
      return;
    }
    const marker = document.createElement('button');
    marker.type = 'button';
    marker.className = 'hint-marker';
    const h = { x, y, colour: sample(x, y), marker };
    hints.push(h);
    marker.addEventListener('pointerdown', (e) => startDrag(e, h));
    marker.addEventListener('keydown', (e) => markerKey(e, h));
    marker.addEventListener('focus', () => { if (selected !== h) select(h); });
    layer.append(marker);
    select(h, true);
    changed();
  }

  function removeHint(h) {
    const i = hints.indexOf(h);
    if (i < 0) return;
    hints.splice(i, 1);
    h.marker.remove();
    const next = hints[Math.min(i, hints.length - 1)] || null;
    select(next, false);
    (next ? next.marker : layer).focus();
    changed();
  }

  function clearHints() {
    hints.forEach((h) => h.marker.remove());
    hints = []; selected = null;
    palette.replaceChildren();
    refreshList();
  }

  function setColour(h, colour) {
    if (!h || h.colour === colour) return;
    h.colour = colour;
    changed();
  }

  function pointAt(e) {
    const box = layer.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((e.clientX - box.left) / box.width), clamp((e.clientY - box.top) / box.height)];
  }

  layer.addEventListener('click', (e) => {
    if (e.target !== layer) return;
    const [x, y] = pointAt(e);
    addHint(x, y);
  });
  layer.addEventListener('keydown', (e) => {
    if (e.target === layer && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault();
      addHint(0.5, 0.5);
    }
  });

  function startDrag(e, h) {
    if (e.button !== 0) return;
    e.preventDefault();   // no text selection, no native drag; the marker keeps the pointer until it is let go
    h.marker.setPointerCapture(e.pointerId);
    select(h, true);
    let moved = false;
    const move = (m) => {
      [h.x, h.y] = pointAt(m);
      moved = true;
      drawHint(h);
    };
    const end = () => {
      h.marker.removeEventListener('pointermove', move);
      h.marker.removeEventListener('pointerup', end);
      h.marker.removeEventListener('pointercancel', end);
      if (moved) { changed(); suggest(h); }
    };
    h.marker.addEventListener('pointermove', move);
    h.marker.addEventListener('pointerup', end);
    h.marker.addEventListener('pointercancel', end);
  }

  function markerKey(e, h) {
    const step = e.shiftKey ? 0.05 : 0.01;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (e.key === 'Delete' || e.key === 'Backspace') {
      e.preventDefault();
      removeHint(h);
    } else if (moves[e.key]) {
      e.preventDefault();
      h.x = Math.min(1, Math.max(0, h.x + moves[e.key][0]));
      h.y = Math.min(1, Math.max(0, h.y + moves[e.key][1]));
      changed();
      clearTimeout(h.suggestTimer);
      h.suggestTimer = setTimeout(() => suggest(h), 300);
    }
  }

  // The model's likeliest colours at the selected hint (given the other hints), as swatches to pick from.
  async function suggest(h) {
    if (!limits.suggests || !photo) return;
    const others = hints.filter((o) => o !== h);
    const at = `${h.x},${h.y},${hintsJson(others)}`;   // the palette follows the place and the other hints
    if (h.palette && h.paletteAt === at) { drawPalette(h); return; }
    palette.replaceChildren();
    palette.setAttribute('aria-busy', 'true');
    const mine = generation;
    try {
      const query = `x=${h.x.toFixed(4)}&y=${h.y.toFixed(4)}`;
      const answer = await (await post('/v1/colorize/suggest', query, photo, others)).json();
      if (mine !== generation || `${h.x},${h.y},${hintsJson(hints.filter((o) => o !== h))}` !== at) return;
      h.palette = answer.palette; h.paletteAt = at;
      if (selected === h) drawPalette(h);
    } catch (e) {
      if (selected === h) say(`No suggested colours: ${e.message}`, true);
    } finally {
      palette.removeAttribute('aria-busy');
    }
  }

  function drawPalette(h) {
    palette.replaceChildren(...h.palette.map((s) => {
      const swatch = document.createElement('button');
      swatch.type = 'button';
      swatch.className = 'swatch';
      swatch.style.setProperty('--swatch', s.colour);
      const share = `${Math.round(s.probability * 100)}%`;
      swatch.title = `${s.colour} (${share})`;
      swatch.setAttribute('aria-label', `Use ${s.colour} (the model gives it ${share})`);
      swatch.dataset.colour = s.colour;
      swatch.setAttribute('aria-pressed', String(s.colour === h.colour));
      swatch.addEventListener('click', () => setColour(h, s.colour));
      return swatch;
    }));
  }

  picker.addEventListener('input', () => setColour(selected, picker.value));
  $('hint-delete').addEventListener('click', () => removeHint(selected));
  $('hints-clear').addEventListener('click', () => {
    clearHints();
    layer.focus();
    changed();
  });

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
