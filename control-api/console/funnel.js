// One funnel: its report over a range of entry times (by default the last 30 days, one bucket),
// drawn as bars of the users who reached each step (uPlot) with a table of the conversions
// and times between steps, per bucket when the range is cut, and by the breakdown trait; read
// again every five seconds, so it follows new events.
import { get, Unauthorized } from '/console/api.js';
import { escape, number, path, message, instant, ago, bars, every } from '/console/ui.js';

const EVERY = 5000;
const DAY = 86400000;

const percent = (rate) => (rate === null ? '–' : `${(rate * 100).toFixed(1)}%`);
const time = (t) => (t ? `${ago(t.p50)} / ${ago(t.p90)}` : '–');

/** The rows of one bucket's (or breakdown value's) steps. */
function rows(steps) {
  return steps.map((s, i) => `<tr data-step="${i}"><th scope="row">${escape(s.event)}</th>
    <td class="users">${number.format(s.users)}</td><td>${percent(s.conversion_from_previous)}</td>
    <td>${percent(s.conversion_from_first)}</td><td>${time(s.time_to_convert_ms)}</td></tr>`).join('');
}

function table(steps, label) {
  return `<table class="funnel-steps" aria-label="${escape(label)}"><thead><tr><th scope="col">step</th><th scope="col">users</th>
    <th scope="col">from previous</th><th scope="col">from first</th><th scope="col">time to convert (p50 / p90)</th></tr></thead>
    <tbody>${rows(steps)}</tbody></table>`;
}

/** Shows funnel `params[0]` in `main` until `signal` aborts. */
export async function show(main, { signal, onError, params }) {
  const id = params[0];
  const now = Date.now();
  main.innerHTML = `
    <h1>Funnel <span class="id">${escape(id)}</span></h1>
    <p><a href="${path`#editor/funnel/${id}`}">Edit or remove</a></p>
    <form id="funnel-range" class="inline">
      <label for="funnel-from">From</label><input id="funnel-from" value="${new Date(now - 30 * DAY).toISOString()}">
      <label for="funnel-to">To</label><input id="funnel-to" value="${new Date(now + 60000).toISOString()}">
      <label for="funnel-step">Buckets</label>
      <select id="funnel-step"><option value="">one</option><option value="1h">hours</option>
        <option value="1d">days</option><option value="7d">weeks</option></select>
      <button type="submit">Show</button>
    </form>
    <p id="funnel-status" role="status"></p>
    <section aria-labelledby="funnel-chart-title">
      <h2 id="funnel-chart-title">Users at each step</h2>
      <div id="funnel-chart" class="chart" role="img" aria-label="Users at each step"></div>
    </section>
    <section id="funnel-total"></section>
    <section id="funnel-buckets"></section>
    <section aria-labelledby="funnel-definition-title">
      <h2 id="funnel-definition-title">Definition</h2>
      <pre id="definition"></pre>
    </section>`;
  const status = main.querySelector('#funnel-status');
  let funnel;
  try {
    funnel = await get(path`/v1/funnels/${id}`);
  } catch (e) {
    if (e instanceof Unauthorized) onError(e);
    else if (!signal.aborted) status.textContent = message(e);
    return;
  }
  if (signal.aborted) return;
  main.querySelector('#definition').textContent = JSON.stringify(funnel.definition, null, 2);
  const names = funnel.definition.steps.map((s) => s.event);
  const chart = bars(main.querySelector('#funnel-chart'), names, 'users', { signal });
  let asked = 0;
  const refresh = async () => {
    const mine = ++asked;
    const from = main.querySelector('#funnel-from').value.trim();
    const to = main.querySelector('#funnel-to').value.trim();
    const step = main.querySelector('#funnel-step').value;
    let query = `?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    if (step) query += `&step=${step}`;
    try {
      const report = await get(path`/v1/funnels/${id}/report` + query);
      if (signal.aborted || mine !== asked) return;
      // The whole range: the buckets' steps added up.
      const total = names.map((_, i) => report.buckets.reduce((n, b) => n + b.steps[i].users, 0));
      chart.setData([names.map((_, i) => i), total]);
      const whole = report.buckets.length === 1 ? report.buckets[0] : null;
      main.querySelector('#funnel-total').innerHTML = `<p id="funnel-as-of">as of ${instant(report.as_of)}</p>` +
        (whole ? table(whole.steps, 'The whole range') : `<p>${number.format(total[0])} user(s) entered in ${report.buckets.length} buckets.</p>`);
      main.querySelector('#funnel-buckets').innerHTML = report.buckets.map((b) => {
        const breakdown = (b.breakdown || []).map((v) => `<h4>${escape(v.value === null ? '(none)' : JSON.stringify(v.value))}</h4>${table(v.steps, `Value ${v.value}`)}`).join('');
        const heading = whole ? '' : `<h3>${instant(b.start)} to ${instant(b.end)}</h3>${table(b.steps, `Bucket from ${instant(b.start)}`)}`;
        return `<div class="bucket" data-start="${b.start}">${heading}${breakdown ? `<details><summary>By ${escape(funnel.definition.breakdown.trait)}</summary>${breakdown}</details>` : ''}</div>`;
      }).join('');
      status.textContent = '';
    } catch (e) {
      if (e instanceof Unauthorized) onError(e);
      else if (!signal.aborted && mine === asked) status.textContent = message(e);
    }
  };
  main.querySelector('#funnel-range').addEventListener('submit', (e) => {
    e.preventDefault();
    refresh();
  }, { signal });
  // Read again five seconds after each reading ends, until the page goes.
  every(signal, refresh, EVERY);
}
