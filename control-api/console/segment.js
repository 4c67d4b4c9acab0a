// One segment: its definition, its size over the last hours (drawn, extended live), its
// latest enters and exits as they are written (/v1/segments/{id}/changes), and its members,
// paged and searchable by the start of a user id.
import { get, follow, Unauthorized } from '/console/api.js';
import { escape, number, chart, atLeast, instant, path, message, cell } from '/console/ui.js';

const PAGE = 50; // members a page
const LATEST = 20; // changes shown
const KEEP = 2000; // points the chart keeps

/** Shows segment `params[0]` in `main` until `signal` aborts. */
export async function show(main, { onState, onError, signal, params }) {
  const id = params[0];
  main.innerHTML = `
    <h1>Segment <span class="id">${escape(id)}</span></h1>
    <p><a href="${path`#editor/segment/${id}`}">Edit or remove</a></p>
    <p id="segment-status" role="status"></p>
    <section class="figures" aria-label="Size">${cell('members', 'size')}${cell('as of', 'as-of')}</section>
    <section aria-labelledby="size-title">
      <h2 id="size-title">Members over the last hours</h2>
      <div id="size-chart" class="chart" role="img" aria-label="Members over the last hours"></div>
    </section>
    <section aria-labelledby="changes-title">
      <h2 id="changes-title">Latest enters and exits</h2>
      <table id="changes"><thead><tr><th scope="col">time</th><th scope="col">user</th><th scope="col">change</th></tr></thead>
      <tbody><tr><td colspan="3">none since this page opened</td></tr></tbody></table>
    </section>
    <section aria-labelledby="members-title">
      <h2 id="members-title">Members</h2>
      <form id="member-search" class="inline" role="search">
        <label for="member-prefix">User id starts with</label>
        <input id="member-prefix" name="prefix" autocomplete="off">
        <button type="submit">Search</button>
      </form>
      <p id="members-count" role="status"></p>
      <ul id="members" class="members"></ul>
      <button id="members-more" type="button" hidden>More</button>
    </section>
    <section aria-labelledby="definition-title">
      <h2 id="definition-title">Definition</h2>
      <pre id="definition"></pre>
    </section>`;
  const status = main.querySelector('#segment-status');
  let segment, history;
  try {
    [segment, history] = await Promise.all([get(path`/v1/segments/${id}`), get(path`/v1/segment-sizes?hours=6&segment=${id}`)]);
  } catch (e) {
    if (e instanceof Unauthorized) onError(e);
    else if (!signal.aborted) status.textContent = message(e);
    return;
  }
  if (signal.aborted) return;
  main.querySelector('#definition').textContent = JSON.stringify(segment.definition, null, 2);
  const points = history.sizes[id] || [];
  const series = [points.map((p) => p[0] / 1000), points.map((p) => p[1])];
  const sizes = chart(main.querySelector('#size-chart'), ['members'], series, { range: atLeast(3600), signal });
  const showSize = (size, watermark) => {
    main.querySelector('#size').textContent = number.format(size);
    main.querySelector('#as-of').textContent = instant(watermark);
  };
  if (points.length) main.querySelector('#size').textContent = number.format(points[points.length - 1][1]);
  follow(path`/v1/segments/${id}/stream`, (name, d) => {
    if (name === 'removed') { status.textContent = 'This segment was removed.'; return; }
    if (name !== 'size') return;
    showSize(d.size, d.watermark);
    series[0].push(d.time / 1000);
    series[1].push(d.size);
    if (series[0].length > KEEP) { series[0].shift(); series[1].shift(); }
    sizes.setData(series);
  }, onState, signal).catch(onError);

  const changes = [];
  follow(path`/v1/segments/${id}/changes`, (name, c) => {
    if (name !== 'change') return;
    changes.unshift(c);
    changes.length = Math.min(changes.length, LATEST);
    main.querySelector('#changes tbody').innerHTML = changes.map((c) => `<tr><td>${instant(c.time)}</td>
      <td><a href="${path`#users/${c.user_id}`}">${escape(c.user_id)}</a></td>
      <td>${escape(c.change)}${c.reason ? ` (${escape(c.reason)})` : ''}</td></tr>`).join('');
  }, () => {}, signal).catch(() => {});

  const list = main.querySelector('#members');
  const more = main.querySelector('#members-more');
  let cursor = null, prefix = '', asked = 0;
  // Only the latest request's answer is shown (a search may overtake a page still loading).
  const page = async (first) => {
    const mine = ++asked;
    more.disabled = true;
    if (first) { list.innerHTML = ''; cursor = null; }
    let query = `?limit=${PAGE}`;
    if (prefix) query += `&prefix=${encodeURIComponent(prefix)}`;
    if (cursor) query += `&cursor=${encodeURIComponent(cursor)}`;
    try {
      const answer = await get(path`/v1/segments/${id}/members` + query);
      if (signal.aborted || mine !== asked) return;
      more.disabled = false;
      for (const m of answer.members) {
        const item = document.createElement('li');
        item.innerHTML = `<a href="${path`#users/${m.user_id}`}">${escape(m.user_id)}</a>`;
        list.append(item);
      }
      cursor = answer.next_cursor;
      more.hidden = !cursor;
      main.querySelector('#members-count').textContent =
        `${number.format(answer.total)} member(s)${prefix ? ` whose id starts with “${prefix}”` : ''} as of ${instant(answer.as_of)}`;
    } catch (e) {
      if (!signal.aborted) main.querySelector('#members-count').textContent = message(e);
    }
  };
  main.querySelector('#member-search').addEventListener('submit', (e) => {
    e.preventDefault();
    prefix = main.querySelector('#member-prefix').value.trim();
    page(true);
  }, { signal });
  more.addEventListener('click', () => page(false), { signal });
  page(true);
}
