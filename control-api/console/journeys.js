// The journeys: each with its status, version and report counts (entered, in progress,
// converted, completed), read again every five seconds.
import { get, Unauthorized } from '/console/api.js';
import { escape, number, path, message, every } from '/console/ui.js';

const EVERY = 5000;

/** Shows the journey list in `main` until `signal` aborts. */
export async function show(main, { signal, onError }) {
  main.innerHTML = `
    <h1>Journeys</h1>
    <p><a href="#editor/journey">New journey</a></p>
    <p id="journeys-status" role="status"></p>
    <table id="journeys"><thead><tr><th scope="col">journey</th><th scope="col">status</th><th scope="col">version</th>
      <th scope="col">entered</th><th scope="col">in progress</th><th scope="col">converted</th><th scope="col">completed</th></tr></thead>
      <tbody></tbody></table>`;
  const status = main.querySelector('#journeys-status');
  const body = main.querySelector('#journeys tbody');
  const refresh = async () => {
    try {
      const journeys = await get('/v1/journeys');
      const reports = await Promise.all(journeys.map((j) => get(path`/v1/journeys/${j.id}/stats`)));
      if (signal.aborted) return;
      body.innerHTML = journeys.map((j, i) => {
        const r = reports[i];
        return `<tr data-journey="${escape(j.id)}"><th scope="row"><a href="${path`#journeys/${j.id}`}">${escape(j.id)}</a></th>
          <td>${escape(j.status)}${j.next_version ? ' (next version pending)' : ''}</td><td>${j.version}</td>
          <td>${number.format(r.entered)}</td><td>${number.format(r.in_progress)}</td>
          <td>${number.format(r.converted)}</td><td>${number.format(r.completed)}</td></tr>`;
      }).join('') || '<tr><td colspan="7">No journey yet: <a href="#editor/journey">make one</a>.</td></tr>';
      status.textContent = '';
    } catch (e) {
      if (e instanceof Unauthorized) onError(e);
      else if (!signal.aborted) status.textContent = message(e);
    }
  };
  // Read again five seconds after each reading ends, until the page goes.
  every(signal, refresh, EVERY);
}
