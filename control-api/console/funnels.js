// The funnels: each installed one with its steps and window, and a link to its report.
import { get, Unauthorized } from '/console/api.js';
import { escape, path, message } from '/console/ui.js';

/** Shows the funnel list in `main` until `signal` aborts. */
export async function show(main, { signal, onError }) {
  main.innerHTML = `
    <h1>Funnels</h1>
    <p><a href="#editor/funnel">New funnel</a></p>
    <p id="funnels-status" role="status"></p>
    <table id="funnels"><thead><tr><th scope="col">funnel</th><th scope="col">steps</th>
      <th scope="col">within</th><th scope="col">order</th></tr></thead><tbody></tbody></table>`;
  let funnels;
  try {
    funnels = await get('/v1/funnels');
  } catch (e) {
    if (e instanceof Unauthorized) onError(e);
    else if (!signal.aborted) main.querySelector('#funnels-status').textContent = message(e);
    return;
  }
  if (signal.aborted) return;
  main.querySelector('#funnels tbody').innerHTML = funnels.map((f) => {
    const d = f.definition;
    return `<tr data-funnel="${escape(f.id)}"><th scope="row"><a href="${path`#funnels/${f.id}`}">${escape(f.id)}</a></th>
      <td>${d.steps.map((s) => escape(s.event)).join(' → ')}</td><td>${escape(d.within)}</td><td>${escape(d.order || 'strict')}</td></tr>`;
  }).join('') || '<tr><td colspan="4">No funnel yet: <a href="#editor/funnel">make one</a>.</td></tr>';
}
