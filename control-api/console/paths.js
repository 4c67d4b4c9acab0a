// The path analyses: each installed one with its anchor and depth, and a link to its report.
import { get, Unauthorized } from '/console/api.js';
import { escape, path, message } from '/console/ui.js';

/** Shows the path analyses in `main` until `signal` aborts. */
export async function show(main, { signal, onError }) {
  main.innerHTML = `
    <h1>Paths</h1>
    <p><a href="#editor/paths">New path analysis</a></p>
    <p id="paths-status" role="status"></p>
    <table id="paths"><thead><tr><th scope="col">analysis</th><th scope="col">anchor</th>
      <th scope="col">steps</th></tr></thead><tbody></tbody></table>`;
  let analyses;
  try {
    analyses = await get('/v1/paths');
  } catch (e) {
    if (e instanceof Unauthorized) onError(e);
    else if (!signal.aborted) main.querySelector('#paths-status').textContent = message(e);
    return;
  }
  if (signal.aborted) return;
  main.querySelector('#paths tbody').innerHTML = analyses.map((a) => {
    const d = a.definition;
    const anchor = d.start ? `after ${escape(d.start.event)}` : `leading to ${escape(d.end?.event)}`;
    return `<tr data-paths="${escape(a.id)}"><th scope="row"><a href="${path`#paths/${a.id}`}">${escape(a.id)}</a></th>
      <td>${anchor}</td><td>${escape(d.depth ?? 3)}${d.collapse ? ', repeats collapsed' : ''}</td></tr>`;
  }).join('') || '<tr><td colspan="3">No path analysis yet: <a href="#editor/paths">make one</a>.</td></tr>';
}
