// One path analysis: its report over a range of anchors (by default the last 30 days): the
// Sankey diagram of the most taken paths (laid out by dagre) and the paths with their users;
// read again every five seconds, so it follows new events.
import { get, Unauthorized } from '/console/api.js';
import { escape, number, path, message, instant, every } from '/console/ui.js';
import { sankey } from '/console/sankey.js';

const EVERY = 5000;
const DAY = 86400000;

/** Shows path analysis `params[0]` in `main` until `signal` aborts. */
export async function show(main, { signal, onError, params }) {
  const id = params[0];
  const now = Date.now();
  main.innerHTML = `
    <h1>Paths <span class="id">${escape(id)}</span></h1>
    <p><a href="${path`#editor/paths/${id}`}">Edit or remove</a></p>
    <form id="paths-range" class="inline">
      <label for="paths-from">From</label><input id="paths-from" value="${new Date(now - 30 * DAY).toISOString()}">
      <label for="paths-to">To</label><input id="paths-to" value="${new Date(now + 60000).toISOString()}">
      <button type="submit">Show</button>
    </form>
    <p id="paths-status" role="status"></p>
    <p id="paths-summary"></p>
    <section aria-labelledby="sankey-title">
      <h2 id="sankey-title">The most taken paths</h2>
      <div id="sankey" class="graph-box"></div>
    </section>
    <table id="top-paths"><thead><tr><th scope="col">path</th><th scope="col">users</th></tr></thead><tbody></tbody></table>
    <section aria-labelledby="paths-definition-title">
      <h2 id="paths-definition-title">Definition</h2>
      <pre id="definition"></pre>
    </section>`;
  const status = main.querySelector('#paths-status');
  try {
    const analysis = await get(path`/v1/paths/${id}`);
    if (signal.aborted) return;
    main.querySelector('#definition').textContent = JSON.stringify(analysis.definition, null, 2);
  } catch (e) {
    if (e instanceof Unauthorized) onError(e);
    else if (!signal.aborted) status.textContent = message(e);
    return;
  }
  let asked = 0;
  const refresh = async () => {
    const mine = ++asked;
    const from = main.querySelector('#paths-from').value.trim();
    const to = main.querySelector('#paths-to').value.trim();
    try {
      const report = await get(path`/v1/paths/${id}/report` + `?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
      if (signal.aborted || mine !== asked) return;
      main.querySelector('#paths-summary').textContent =
        `${number.format(report.users)} user(s), ${number.format(report.other)} of them on other paths; as of ${instant(report.as_of)}`;
      sankey(main.querySelector('#sankey'), report.sankey);
      main.querySelector('#top-paths tbody').innerHTML = report.top.map((p) => `<tr><td>${p.path.map(escape).join(' → ')}</td>
        <td class="users">${number.format(p.users)}</td></tr>`).join('') || '<tr><td colspan="2">No anchor in this range.</td></tr>';
      status.textContent = '';
    } catch (e) {
      if (e instanceof Unauthorized) onError(e);
      else if (!signal.aborted && mine === asked) status.textContent = message(e);
    }
  };
  main.querySelector('#paths-range').addEventListener('submit', (e) => {
    e.preventDefault();
    refresh();
  }, { signal });
  // Read again five seconds after each reading ends, until the page goes.
  every(signal, refresh, EVERY);
}
