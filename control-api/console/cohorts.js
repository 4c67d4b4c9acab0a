// The retention cohorts: each installed one with its first and return events and its periods,
// and a link to its report.
import { get, Unauthorized } from '/console/api.js';
import { escape, path, message } from '/console/ui.js';

/** Shows the cohort list in `main` until `signal` aborts. */
export async function show(main, { signal, onError }) {
  main.innerHTML = `
    <h1>Cohorts</h1>
    <p><a href="#editor/cohort">New cohort</a></p>
    <p id="cohorts-status" role="status"></p>
    <table id="cohorts"><thead><tr><th scope="col">cohort</th><th scope="col">first</th>
      <th scope="col">return</th><th scope="col">periods</th></tr></thead><tbody></tbody></table>`;
  let cohorts;
  try {
    cohorts = await get('/v1/cohorts');
  } catch (e) {
    if (e instanceof Unauthorized) onError(e);
    else if (!signal.aborted) main.querySelector('#cohorts-status').textContent = message(e);
    return;
  }
  if (signal.aborted) return;
  main.querySelector('#cohorts tbody').innerHTML = cohorts.map((c) => {
    const d = c.definition;
    return `<tr data-cohort="${escape(c.id)}"><th scope="row"><a href="${path`#cohorts/${c.id}`}">${escape(c.id)}</a></th>
      <td>${escape(d.first.event)}</td><td>${escape(d.return.event)}</td><td>${escape(d.periods)} × ${escape(d.period)}</td></tr>`;
  }).join('') || '<tr><td colspan="4">No cohort yet: <a href="#editor/cohort">make one</a>.</td></tr>';
}
