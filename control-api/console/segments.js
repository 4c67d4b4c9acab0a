// The segments: each installed segment with its size, live from /v1/streams/segments, and a
// sparkline of its size over the last hours (/v1/segment-sizes, then extended live).
import { get, follow, Unauthorized } from '/console/api.js';
import { escape, number, chart, path, message } from '/console/ui.js';

const KEEP = 1000; // points a sparkline keeps

/** Shows the segment list in `main` until `signal` aborts. */
export async function show(main, { onState, onError, signal }) {
  main.innerHTML = `
    <h1>Segments</h1>
    <p><a href="#editor/segment">New segment</a></p>
    <p id="segments-status" role="status"></p>
    <table id="segments"><thead><tr><th scope="col">segment</th><th scope="col">members</th>
      <th scope="col">last hours</th></tr></thead><tbody></tbody></table>`;
  const status = main.querySelector('#segments-status');
  let segments, history;
  try {
    [segments, history] = await Promise.all([get('/v1/segments'), get('/v1/segment-sizes?hours=6')]);
  } catch (e) {
    if (e instanceof Unauthorized) onError(e);
    else if (!signal.aborted) status.textContent = message(e);
    return;
  }
  if (signal.aborted) return;
  const body = main.querySelector('#segments tbody');
  if (!segments.length) body.innerHTML = '<tr><td colspan="3">No segment is installed: <a href="#editor/segment">make one</a>.</td></tr>';
  const rows = new Map();
  for (const s of segments) {
    const row = document.createElement('tr');
    row.dataset.segment = s.id;
    row.innerHTML = `<th scope="row"><a href="${path`#segments/${s.id}`}">${escape(s.id)}</a></th>
      <td class="size">–</td><td class="spark" aria-hidden="true"></td>`;
    body.append(row);
    const points = history.sizes[s.id] || [];
    const series = [points.map((p) => p[0] / 1000), points.map((p) => p[1])];
    const spark = chart(row.querySelector('.spark'), ['members'], series, { height: 32, small: true, signal });
    rows.set(s.id, { row, series, spark });
    if (points.length) row.querySelector('.size').textContent = number.format(points[points.length - 1][1]);
  }
  follow('/v1/streams/segments', (name, d) => {
    if (name !== 'sizes') return;
    // The server's clock, so that points follow those of the history.
    const now = d.time / 1000;
    for (const [id, size] of Object.entries(d.sizes)) {
      const r = rows.get(id);
      if (!r) continue;
      r.row.querySelector('.size').textContent = number.format(size);
      r.series[0].push(now);
      r.series[1].push(size);
      if (r.series[0].length > KEEP) { r.series[0].shift(); r.series[1].shift(); }
      r.spark.setData(r.series);
    }
  }, onState, signal).catch(onError);
}
