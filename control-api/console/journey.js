// One journey: its graph with the users at each node and those who passed, live from
// /v1/journeys/{id}/stream; its report; the lifecycle buttons (publish, pause, resume, end:
// the server says no with 409 as for any API call, and the page shows why); its versions, and
// for a pending version the migration (a node map) with how many users each mapping would
// move; its split branches side by side (A/B results: conversions, rate with its 95% interval,
// value); and its latest transitions and actions as they are written.
import { get, call, follow, Unauthorized } from '/console/api.js';
import { escape, number, path, message, cell, instant } from '/console/ui.js';
import { draw, rules } from '/console/graph.js';

const LATEST = 20; // transitions shown
const percent = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });
const amount = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

/** Shows journey `params[0]` in `main` until `signal` aborts. */
export async function show(main, { onState, onError, signal, params }) {
  const id = params[0];
  main.innerHTML = `
    <h1>Journey <span class="id">${escape(id)}</span></h1>
    <p><a href="${path`#editor/journey/${id}`}">Edit or remove</a></p>
    <section class="figures" aria-label="Status">
      ${cell('status', 'status')}${cell('version', 'version')}${cell('published', 'published')}
    </section>
    <div class="buttons" role="group" aria-label="Lifecycle">
      <button type="button" data-action="publish">Publish</button>
      <button type="button" data-action="pause">Pause</button>
      <button type="button" data-action="resume">Resume</button>
      <button type="button" data-action="end">End</button>
    </div>
    <p id="journey-status" role="status" aria-live="polite"></p>
    <section class="figures" aria-label="Report">
      ${cell('entered', 'entered')}${cell('in progress', 'in-progress')}${cell('converted', 'converted')}
      ${cell('exited by rule', 'exited')}${cell('completed', 'completed')}${cell('canceled', 'canceled')}
      <span id="value-cell" hidden>${cell('converted value', 'converted-value')}</span>
    </section>
    <section aria-labelledby="graph-title">
      <h2 id="graph-title">Graph</h2>
      <ul id="rules" class="rules"></ul>
      <div id="graph" class="graph-box"></div>
      <table id="nodes"><caption>Users at each node</caption><thead><tr><th scope="col">node</th><th scope="col">kind</th>
        <th scope="col">here now</th><th scope="col">passed</th><th scope="col">actions</th></tr></thead><tbody></tbody></table>
    </section>
    <section id="splits-section" aria-labelledby="splits-title" hidden>
      <h2 id="splits-title">Split results</h2>
      <p>Users who took each branch, and of them those who converted in the same entry, with the 95% Wilson interval of the rate.</p>
      <div id="splits"></div>
    </section>
    <section id="next" aria-labelledby="next-title" hidden>
      <h2 id="next-title">Next version</h2>
      <p>Publishing it moves the users in flight as the migration says. The node map sends users at an old node to a new one;
        the others stay at the node of the same id and kind, arrive at the node of the same id, or go to the default.</p>
      <label for="migrate">Migration (the <code>migrate</code> object of the publish)</label>
      <textarea id="migrate" rows="4" spellcheck="false">{"node_map": {}, "default": "exit"}</textarea>
      <table id="moves"><thead><tr><th scope="col">from</th><th scope="col">users</th><th scope="col">placement</th><th scope="col">to</th></tr></thead><tbody></tbody></table>
      <div id="next-graph" class="graph-box"></div>
    </section>
    <section aria-labelledby="latest-title">
      <h2 id="latest-title">Latest transitions and actions</h2>
      <table id="transitions"><thead><tr><th scope="col">time</th><th scope="col">user</th><th scope="col">what</th></tr></thead>
      <tbody><tr><td colspan="3">none since this page opened</td></tr></tbody></table>
    </section>
    <section aria-labelledby="definition-title">
      <h2 id="definition-title">Definition</h2>
      <pre id="definition"></pre>
    </section>`;
  const status = main.querySelector('#journey-status');
  const set = (key, text) => { main.querySelector(`#${key}`).textContent = text; };
  let journey = null, report = null;

  const render = () => {
    if (!journey) return;
    set('status', journey.status);
    set('version', String(journey.version));
    set('published', journey.published_at ? instant(journey.published_at) : (journey.status === 'draft' ? 'not yet' : '–'));
    main.querySelector('#definition').textContent = JSON.stringify(journey.definition, null, 2);
    main.querySelector('#rules').innerHTML = rules(journey.definition).map((r) => `<li>${escape(r)}</li>`).join('');
    draw(main.querySelector('#graph'), journey.definition, report || { nodes: {} });
    const buttons = main.querySelectorAll('[data-action]');
    const allowed = {
      draft: ['publish'], ongoing: ['pause', 'end'], paused: ['resume', 'end'], ended: [],
    }[journey.status] || [];
    for (const b of buttons) {
      const action = b.dataset.action;
      const can = allowed.includes(action) || (action === 'publish' && journey.next_version && journey.status !== 'ended');
      b.disabled = !can;
    }
    const next = main.querySelector('#next');
    next.hidden = !journey.next_version;
    if (journey.next_version) {
      main.querySelector('#next-title').textContent = `Next version (${journey.next_version.version}), not published`;
      draw(main.querySelector('#next-graph'), journey.next_version.definition);
    }
  };
  const renderReport = () => {
    if (!report) return;
    for (const [key, field] of [['entered', 'entered'], ['in-progress', 'in_progress'], ['converted', 'converted'],
      ['exited', 'exited'], ['completed', 'completed'], ['canceled', 'canceled']]) {
      set(key, number.format(report[field] ?? 0));
    }
    const valued = report.converted_value !== undefined;
    main.querySelector('#value-cell').hidden = !valued;
    if (valued) set('converted-value', amount.format(report.converted_value));
    const splits = Object.entries(report.splits || {});
    main.querySelector('#splits-section').hidden = splits.length === 0;
    main.querySelector('#splits').innerHTML = splits.map(([node, branches]) => `
      <table class="split" data-split="${escape(node)}"><caption>Split ${escape(node)}</caption>
        <thead><tr><th scope="col">branch</th><th scope="col">users</th><th scope="col">converted</th>
          <th scope="col">rate</th><th scope="col">95% interval</th>${valued ? '<th scope="col">value</th>' : ''}</tr></thead>
        <tbody>${branches.map((b) => `<tr data-branch="${b.branch}"><th scope="row">${b.branch + 1} → ${escape(b.next)}</th>
          <td>${number.format(b.entered)}</td><td>${number.format(b.converted)}</td>
          <td>${b.conversion_rate === null ? '–' : percent.format(b.conversion_rate)}</td>
          <td>${b.interval_95 === null ? '–' : `${percent.format(b.interval_95[0])} – ${percent.format(b.interval_95[1])}`}</td>
          ${valued ? `<td>${amount.format(b.converted_value ?? 0)}</td>` : ''}</tr>`).join('')}</tbody>
      </table>`).join('');
    if (journey) draw(main.querySelector('#graph'), journey.definition, report);
    main.querySelector('#nodes tbody').innerHTML = Object.entries(report.nodes || {}).map(([node, n]) =>
      `<tr><th scope="row">${escape(node)}</th><td>${escape(n.kind)}</td><td>${number.format(n.current)}</td>
        <td>${number.format(n.entered)}</td><td>${escape(Object.entries(n.actions || {}).map(([s, k]) => `${s}: ${k}`).join(', '))}</td></tr>`).join('');
  };
  const load = async () => {
    const got = await get(path`/v1/journeys/${id}`);
    if (signal.aborted) return;
    journey = got;
    render();
    if (journey.next_version) preview();
  };
  // Only the latest preview is shown, a moment after the last keystroke.
  let previews = 0, pause = null;
  signal.addEventListener('abort', () => clearTimeout(pause));
  const preview = async () => {
    const mine = ++previews;
    const moves = main.querySelector('#moves tbody');
    let migrate;
    try {
      migrate = JSON.parse(main.querySelector('#migrate').value || 'null');
    } catch (e) {
      moves.innerHTML = `<tr><td colspan="4">${escape(e.message)}</td></tr>`;
      return;
    }
    try {
      const plan = await call('POST', path`/v1/journeys/${id}/migration`, migrate === null ? {} : { migrate });
      if (signal.aborted || mine !== previews) return;
      moves.innerHTML = plan.moves.map((m) => `<tr><td>${escape(m.from)}</td><td>${number.format(m.users)}</td>
        <td>${escape(m.placement)}</td><td>${escape(m.to ?? 'out of the journey')}</td></tr>`).join('')
        || '<tr><td colspan="4">No user is in flight.</td></tr>';
    } catch (e) {
      if (!signal.aborted && mine === previews) moves.innerHTML = `<tr><td colspan="4">${escape(message(e))}</td></tr>`;
    }
  };
  main.querySelector('#migrate').addEventListener('input', () => {
    clearTimeout(pause);
    pause = setTimeout(preview, 300);
  }, { signal });
  for (const b of main.querySelectorAll('[data-action]')) {
    b.addEventListener('click', async () => {
      const action = b.dataset.action;
      let payload;
      if (action === 'publish' && journey?.next_version) {
        try {
          payload = { migrate: JSON.parse(main.querySelector('#migrate').value) };
        } catch (e) {
          status.textContent = `The migration is not JSON: ${e.message}`;
          return;
        }
      }
      status.textContent = `${action}…`;
      try {
        const answer = await call('POST', path`/v1/journeys/${id}/${action}`, payload);
        if (signal.aborted) return;
        status.textContent = answer?.status ? `Done: the journey is ${answer.status} (version ${answer.version}).`
          : `Accepted: ${answer?.location ?? ''}`;
        await load();
      } catch (e) {
        status.textContent = `Refused: ${message(e)}`;
      }
    }, { signal });
  }
  try {
    await load();
  } catch (e) {
    if (e instanceof Unauthorized) onError(e);
    else if (!signal.aborted) status.textContent = message(e);
    return;
  }
  if (signal.aborted) return;
  follow(path`/v1/journeys/${id}/stream`, (name, r) => {
    if (name === 'removed') { status.textContent = 'This journey was removed.'; return; }
    if (name !== 'stats') return;
    const statusChanged = report && journey && r.version !== report.version;
    report = r;
    renderReport();
    if (statusChanged) load().catch(() => {});
  }, onState, signal).catch(onError);
  const latest = [];
  follow(path`/v1/journeys/${id}/transitions`, (name, t) => {
    if (name !== 'transition' && name !== 'action') return;
    latest.unshift([name, t]);
    latest.length = Math.min(latest.length, LATEST);
    main.querySelector('#transitions tbody').innerHTML = latest.map(([kind, t]) => `<tr><td>${instant(t.time)}</td>
      <td><a href="${path`#users/${t.user_id}`}">${escape(t.user_id)}</a></td>
      <td>${kind === 'action' ? `action at ${escape(t.node)}: ${escape(t.channel)} ${escape(t.status)}`
        : `${escape(t.from ?? 'entry')} → ${escape(t.to ?? 'out')} (${escape(t.reason)})`}</td></tr>`).join('');
  }, () => {}, signal).catch(() => {});
}
