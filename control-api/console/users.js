// A user, looked up by id: their traits (with when each was set), first and last seen, events
// by name and the retained events (newest first, paged), the segments they are in (since when), and their
// journeys (status, node, history) and actions; from GET /v1/users/{id}.
import { get, Unauthorized } from '/console/api.js';
import { escape, number, instant, path, message, cell } from '/console/ui.js';

const PAGE = 50; // events a page

function table(headings, rows, empty) {
  const head = headings.map((h) => `<th scope="col">${escape(h)}</th>`).join('');
  const body = rows.length ? rows.join('') : `<tr><td colspan="${headings.length}">${escape(empty)}</td></tr>`;
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function brief(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

/** Shows the user lookup, and user `params[0]` if given, in `main`. */
export async function show(main, { params, signal, onError }) {
  const id = params[0] || '';
  main.innerHTML = `
    <h1>Users</h1>
    <form id="user-search" class="inline" role="search">
      <label for="user-id">User id</label>
      <input id="user-id" name="user" autocomplete="off" required value="${escape(id)}">
      <button type="submit">Look up</button>
    </form>
    <p id="user-status" role="status"></p>
    <div id="user"></div>`;
  main.querySelector('#user-search').addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = path`#users/${main.querySelector('#user-id').value.trim()}`;
  }, { signal });
  if (!id) return;
  const status = main.querySelector('#user-status');
  let user;
  try {
    user = await get(path`/v1/users/${id}` + `?limit=${PAGE}&order=desc`);
  } catch (e) {
    if (e instanceof Unauthorized) return onError(e);
    if (!signal.aborted) status.textContent = e.status === 404 ? `Nothing is held about “${id}”.` : message(e);
    return;
  }
  if (signal.aborted) return;
  const traits = Object.entries(user.traits).map(([name, t]) =>
    `<tr><th scope="row">${escape(name)}</th><td>${escape(brief(t.value))}</td><td>${t.set_at ? instant(t.set_at) : 'not retained'}</td></tr>`);
  const counts = Object.entries(user.event_counts).map(([name, n]) => `<tr><th scope="row">${escape(name)}</th><td>${number.format(n)}</td></tr>`);
  const segments = user.segments.map((s) =>
    `<tr><th scope="row"><a href="${path`#segments/${s.id}`}">${escape(s.id)}</a></th><td>${s.since ? instant(s.since) : 'before the last restart'}</td></tr>`);
  const journeys = user.journeys.map((j) => `<tr><th scope="row"><a href="${path`#journeys/${j.journey}`}">${escape(j.journey)}</a></th>
    <td>${escape(j.status)}${j.outcome ? ` (${escape(j.outcome)})` : ''}</td><td>${escape(j.node || '')}</td><td>${instant(j.since)}</td>
    <td><details><summary>${j.history.length} transition(s)</summary><ol>${j.history.map((h) =>
      `<li>${instant(h.time)}: ${escape(h.from ?? 'entry')} → ${escape(h.to ?? 'out')} (${escape(h.reason)})</li>`).join('')}</ol></details></td></tr>`);
  const actions = user.actions.map((a) => `<tr><td>${instant(a.time)}</td><td>${escape(a.journey)}</td><td>${escape(a.node)}</td>
    <td>${escape(a.channel ?? '')}</td><td>${escape(a.status ?? '')}</td></tr>`);
  const events = (list) => list.map((e) => `<tr><td>${instant(e.timestamp)}</td>
    <td>${escape(e.event || e.type)}</td><td><code>${escape(brief(e.properties || e.traits || {}))}</code></td></tr>`).join('');
  main.querySelector('#user').innerHTML = `
    <h2 class="id">${escape(user.user_id)}</h2>
    <section class="figures" aria-label="Activity">
      ${cell('first seen', 'first-seen')}${cell('last seen', 'last-seen')}${cell('retained events', 'retained')}${cell('as of', 'user-as-of')}
    </section>
    <section aria-labelledby="segments-title"><h2 id="segments-title">Segments</h2>
      <div id="user-segments">${table(['segment', 'since'], segments, 'in no segment')}</div></section>
    <section aria-labelledby="journeys-title"><h2 id="journeys-title">Journeys</h2>
      <div id="user-journeys">${table(['journey', 'status', 'node', 'since', 'history'], journeys, 'in no journey')}</div></section>
    <section aria-labelledby="actions-title"><h2 id="actions-title">Actions</h2>
      ${table(['time', 'journey', 'node', 'channel', 'status'], actions, 'none')}</section>
    <section aria-labelledby="traits-title"><h2 id="traits-title">Traits</h2>
      ${table(['trait', 'value', 'set at'], traits, 'none')}</section>
    <section aria-labelledby="counts-title"><h2 id="counts-title">Events by name</h2>
      ${table(['event', 'count'], counts, 'none retained')}</section>
    <section aria-labelledby="events-title"><h2 id="events-title">Recent events</h2>
      <table id="user-events"><thead><tr><th scope="col">time</th><th scope="col">event</th><th scope="col">properties</th></tr></thead>
      <tbody>${events(user.events)}</tbody></table>
      <button id="events-more" type="button" ${user.next_cursor ? '' : 'hidden'}>More</button></section>`;
  const set = (key, text) => { main.querySelector(`#${key}`).textContent = text; };
  set('first-seen', instant(user.first_seen));
  set('last-seen', instant(user.last_seen));
  set('retained', number.format(user.retained_events));
  set('user-as-of', instant(user.as_of));
  let cursor = user.next_cursor;
  const more = main.querySelector('#events-more');
  more.addEventListener('click', async () => {
    try {
      const page = await get(path`/v1/users/${id}` + `?limit=${PAGE}&order=desc&cursor=${encodeURIComponent(cursor)}`);
      if (signal.aborted) return;
      main.querySelector('#user-events tbody').insertAdjacentHTML('beforeend', events(page.events));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (e) {
      status.textContent = message(e);
    }
  }, { signal });
}
