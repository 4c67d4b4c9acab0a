// What the console's pages share: formatting, escaping, figures, and charts of a series over
// time, bar charts and curves (uPlot), sized to their box and coloured by the page's light or dark theme.
import uPlot from '/console/vendor/uplot-1.6.32/uPlot.esm.js';

export const number = new Intl.NumberFormat();

/** Text made safe to put into HTML. */
export function escape(text) {
  return String(text ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A figure: a label over a value (filled in later by its id). */
export function cell(label, id) {
  return `<div class="figure"><span class="label">${escape(label)}</span><span class="value" id="${id}">–</span></div>`;
}

/** A duration in ms, for people. */
export function ago(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7200000) return `${Math.round(ms / 60000)} min`;
  if (ms < 172800000) return `${Math.round(ms / 3600000)} h`;
  return `${Math.round(ms / 86400000)} d`;
}

/** An instant (ms since the epoch), in UTC. */
export function instant(ms) {
  if (ms === null || ms === undefined) return '–';
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
}

/** A theme colour (a CSS custom property of the root). */
export function colour(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/** A path of the API with its ids encoded. */
export function path(strings, ...ids) {
  return strings.reduce((out, s, i) => out + s + (i < ids.length ? encodeURIComponent(ids[i]) : ''), '');
}

/** The message of an error for a page (a refusal's validation errors joined in). */
export function message(e) {
  return e.errors && e.errors.length ? `${e.message}: ${e.errors.map((x) => `${x.path} ${x.message}`).join('; ')}` : e.message;
}

/**
 * A line chart of `series` (`[[x seconds...], [y...], ...]`, one label each) in `box`, its x
 * axis a time; `small` for a sparkline (no axes, no legend). Resizes with the window until
 * `signal` aborts. Returns the uPlot.
 */
export function chart(box, labels, series, { height = 200, small = false, range, signal } = {}) {
  const strokes = [colour('--accent', '#1d4ed8'), colour('--second', '#15803d')];
  const width = () => Math.max(box.clientWidth, small ? 80 : 280);
  const plot = new uPlot({
    width: width(),
    height,
    legend: { show: !small },
    cursor: { show: !small },
    series: [{}, ...labels.map((label, i) => ({ label, stroke: strokes[i % strokes.length], width: small ? 1.5 : 2 }))],
    scales: { x: { time: true, ...(range ? { range } : {}) } },
    axes: small ? [{ show: false }, { show: false }] : [{ stroke: colour('--muted', '#4b5563') }, { size: 60, stroke: colour('--muted', '#4b5563') }],
  }, series, box);
  if (signal) window.addEventListener('resize', () => plot.setSize({ width: width(), height }), { signal });
  return plot;
}

/**
 * A bar chart of one value per category (`names`, in order) in `box`, labelled `label`; fill
 * it with `setData([[0, 1, ...], [values...]])`. Resizes with the window until `signal` aborts.
 * Returns the uPlot.
 */
export function bars(box, names, label, { height = 240, signal } = {}) {
  const width = () => Math.max(box.clientWidth, 280);
  const plot = new uPlot({
    width: width(),
    height,
    legend: { show: false },
    series: [{}, { label, fill: colour('--accent', '#1d4ed8'), stroke: colour('--accent', '#1d4ed8'),
      paths: uPlot.paths.bars({ size: [0.6, 120] }), points: { show: false } }],
    scales: { x: { time: false, range: [-0.5, names.length - 0.5] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [
      { stroke: colour('--muted', '#4b5563'), splits: () => names.map((_, i) => i), values: (u, splits) => splits.map((i) => names[i] ?? '') },
      { size: 60, stroke: colour('--muted', '#4b5563') },
    ],
  }, [names.map((_, i) => i), names.map(() => 0)], box);
  if (signal) window.addEventListener('resize', () => plot.setSize({ width: width(), height }), { signal });
  return plot;
}

/**
 * Lines of shares (0 to 1) over periods 0, 1, ... (`series`: `[[periods...], [shares...], ...]`,
 * one label each) in `box`. Resizes with the window until `signal` aborts. Returns the uPlot.
 */
export function curves(box, labels, series, { height = 240, signal } = {}) {
  const strokes = [colour('--accent', '#1d4ed8'), colour('--second', '#15803d'), '#b45309', '#9333ea', '#0e7490', '#be123c', '#4d7c0f', '#6b7280'];
  const width = () => Math.max(box.clientWidth, 280);
  const plot = new uPlot({
    width: width(),
    height,
    series: [{ label: 'period' }, ...labels.map((label, i) => ({ label, stroke: strokes[i % strokes.length], width: 2,
      value: (u, v) => (v === null ? '–' : `${(v * 100).toFixed(1)}%`) }))],
    scales: { x: { time: false }, y: { range: [0, 1] } },
    axes: [
      { stroke: colour('--muted', '#4b5563'), values: (u, splits) => splits.map((k) => (Number.isInteger(k) ? k : '')) },
      { size: 60, stroke: colour('--muted', '#4b5563'), values: (u, splits) => splits.map((v) => `${Math.round(v * 100)}%`) },
    ],
  }, series, box);
  if (signal) window.addEventListener('resize', () => plot.setSize({ width: width(), height }), { signal });
  return plot;
}

/** A chart's x range: at least `span` seconds (a single point does not span years). */
export function atLeast(span) {
  return (u, min, max) => {
    const end = max ?? Date.now() / 1000;
    const start = min ?? end - span;
    return end - start < span ? [end - span, end] : [start, end];
  };
}

/** Shows `text` (an error, or nothing) in the page's status line `element`. */
export function say(element, text, kind = 'error') {
  element.textContent = text || '';
  element.className = text ? kind : '';
}

/**
 * Calls `refresh` now and again `ms` after each call ends (never two at once), until `signal`
 * aborts.
 */
export function every(signal, refresh, ms = 5000) {
  let timer = null;
  signal.addEventListener('abort', () => clearTimeout(timer));
  const again = async () => {
    await refresh();
    if (!signal.aborted) timer = setTimeout(again, ms);
  };
  again();
}
