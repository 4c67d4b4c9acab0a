// One retention cohort: its report over a range of first events (by default the last 90 days
// in weeks), as a retention triangle (each cohort a row, each period a column, shaded by the
// share who came back; periods not yet over for the whole cohort are marked) and the
// retention curves drawn with uPlot; read again every five seconds, so it follows new events.
import { get, Unauthorized } from '/console/api.js';
import { escape, number, path, message, instant, curves, every } from '/console/ui.js';

const EVERY = 5000;
const DAY = 86400000;

const percent = (rate) => (rate === null ? '–' : `${(rate * 100).toFixed(1)}%`);

/** Shows cohort `params[0]` in `main` until `signal` aborts. */
export async function show(main, { signal, onError, params }) {
  const id = params[0];
  const now = Date.now();
  main.innerHTML = `
    <h1>Cohort <span class="id">${escape(id)}</span></h1>
    <p><a href="${path`#editor/cohort/${id}`}">Edit or remove</a></p>
    <form id="cohort-range" class="inline">
      <label for="cohort-from">From</label><input id="cohort-from" value="${new Date(now - 90 * DAY).toISOString()}">
      <label for="cohort-to">To</label><input id="cohort-to" value="${new Date(now + 60000).toISOString()}">
      <label for="cohort-step">Cohorts by</label>
      <select id="cohort-step"><option value="7d">week</option><option value="1d">day</option><option value="">one</option></select>
      <label for="cohort-kind">Count</label>
      <select id="cohort-kind"><option value="retained">in the period</option><option value="unbounded">in it or later</option></select>
      <button type="submit">Show</button>
    </form>
    <p id="cohort-status" role="status"></p>
    <p id="cohort-as-of"></p>
    <section aria-labelledby="triangle-title">
      <h2 id="triangle-title">Retention by cohort</h2>
      <table id="triangle" class="triangle"><thead></thead><tbody></tbody></table>
    </section>
    <section aria-labelledby="curves-title">
      <h2 id="curves-title">Retention curves</h2>
      <div id="cohort-chart" class="chart" role="img" aria-label="Share retained in each period, per cohort"></div>
    </section>
    <section aria-labelledby="cohort-definition-title">
      <h2 id="cohort-definition-title">Definition</h2>
      <pre id="definition"></pre>
    </section>`;
  const status = main.querySelector('#cohort-status');
  let cohort;
  try {
    cohort = await get(path`/v1/cohorts/${id}`);
  } catch (e) {
    if (e instanceof Unauthorized) onError(e);
    else if (!signal.aborted) status.textContent = message(e);
    return;
  }
  if (signal.aborted) return;
  main.querySelector('#definition').textContent = JSON.stringify(cohort.definition, null, 2);
  const periods = cohort.definition.periods;
  let chart = null;
  let asked = 0;
  const refresh = async () => {
    const mine = ++asked;
    const from = main.querySelector('#cohort-from').value.trim();
    const to = main.querySelector('#cohort-to').value.trim();
    const step = main.querySelector('#cohort-step').value;
    const kind = main.querySelector('#cohort-kind').value;
    let query = `?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    if (step) query += `&step=${step}`;
    try {
      const report = await get(path`/v1/cohorts/${id}/report` + query);
      if (signal.aborted || mine !== asked) return;
      const rate = kind === 'retained' ? 'rate' : 'unbounded_rate';
      main.querySelector('#cohort-as-of').textContent = `as of ${instant(report.as_of)}`;
      main.querySelector('#triangle thead').innerHTML = `<tr><th scope="col">cohort</th><th scope="col">users</th>${
        Array.from({ length: periods }, (_, k) => `<th scope="col">${k}</th>`).join('')}</tr>`;
      const shown = report.cohorts.filter((c) => c.users > 0);
      main.querySelector('#triangle tbody').innerHTML = shown.map((c) => `<tr data-start="${c.start}">
        <th scope="row">${instant(c.start)}</th><td class="users">${number.format(c.users)}</td>${c.periods.map((p) => {
          const share = p[rate] ?? 0;
          return `<td class="${p.complete ? 'share' : 'share open'}" data-period="${p.period}" data-count="${p[kind]}"
            data-share="${share.toFixed(3)}" title="${number.format(p[kind])} user(s)">${percent(p[rate])}</td>`;
        }).join('')}</tr>`).join('') || `<tr><td colspan="${periods + 2}">Nobody's first event lies in this range.</td></tr>`;
      // Shaded through the CSSOM (the content security policy allows no style attribute).
      for (const cell of main.querySelectorAll('#triangle td.share')) cell.style.setProperty('--share', cell.dataset.share);
      // One curve per cohort (at most eight, the largest), over the periods.
      const largest = [...shown].sort((a, b) => b.users - a.users).slice(0, 8);
      const data = [Array.from({ length: periods }, (_, k) => k), ...largest.map((c) => c.periods.map((p) => p[rate] ?? null))];
      const labels = largest.map((c) => instant(c.start).slice(0, 10));
      chart?.destroy();
      chart = curves(main.querySelector('#cohort-chart'), labels, data, { signal });
      status.textContent = '';
    } catch (e) {
      if (e instanceof Unauthorized) onError(e);
      else if (!signal.aborted && mine === asked) status.textContent = message(e);
    }
  };
  main.querySelector('#cohort-range').addEventListener('submit', (e) => {
    e.preventDefault();
    refresh();
  }, { signal });
  // Read again five seconds after each reading ends, until the page goes.
  every(signal, refresh, EVERY);
}
