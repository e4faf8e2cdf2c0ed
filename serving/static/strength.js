// The colour-strength slider: 0 the palest, most accurate colours (each as often as it occurs) .. 1 the most vivid.
// It starts at the model's default (GET /healthz "strength"; null: the model has no such control, and the slider
// is disabled, saying so); each move asks the page to colour the photo again (app.js debounces it like a hint).
'use strict';
window.colourStrength = (onChange) => {
  const $ = (id) => document.getElementById(id);
  const slider = $('strength'), shown = $('strength-value'), reset = $('strength-reset');
  const help = $('strength-help'), note = $('strength-note');
  let model = null;       // the model's default strength, or null
  let touched = false;    // the user's own value is kept when /healthz answers late
  let atDefault = true;   // the slider snaps to its step: a default of 0.375 shows as 0.38 but is sent as none

  const text = (v) => Number(v).toFixed(2);
  const value = () => (atDefault ? model : Number(slider.value));

  function draw() {
    const v = value();
    shown.textContent = model === null ? '–' : text(v);
    const side = v === model ? 'the model\'s default' : `${v > model ? 'more vivid' : 'paler'} than the model's `
      + `default (${text(model)})`;
    slider.setAttribute('aria-valuetext', model === null ? 'not available for this model' : `${text(v)}, ${side}`);
    reset.disabled = model === null || v === model;
  }

  slider.addEventListener('input', () => {
    touched = true;
    atDefault = Number(slider.value) === model;
    draw();
    onChange();
  });
  reset.addEventListener('click', () => {
    slider.value = String(model);
    atDefault = true;
    draw();
    onChange();
    slider.focus();
  });

  return {
    setModel(given) {   // /healthz's "strength"
      model = typeof given === 'number' ? given : null;
      slider.disabled = model === null;
      note.hidden = model !== null;
      help.hidden = model === null;
      if (model !== null && !touched) slider.value = String(model);
      atDefault = !touched || Number(slider.value) === model;
      draw();
    },
    // The upload route's query: ?strength= once moved from the model's default (which is what none gives).
    query: () => (model === null || atDefault ? '' : `strength=${slider.value}`),
    label: () => (model === null ? '' : ` (colour strength ${text(value())})`),
  };
};
