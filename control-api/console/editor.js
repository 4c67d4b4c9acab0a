// The editor: a segment, a journey, a funnel, a retention cohort or a path analysis as JSON, checked by the server as one types
// (POST /v1/validate/{kind}, every error at its JSON path), a journey's graph redrawn from
// what is written, and install, replace or remove through the same endpoints as any client.
import { get, call, Unauthorized } from '/console/api.js';
import { escape, path, message } from '/console/ui.js';
import { draw, rules } from '/console/graph.js';

const PAUSE = 300; // ms after the last keystroke before checking

const EXAMPLES = {
  segment: { id: 'recent_buyer', condition: { performed: { event: 'Order Completed', within: '30d' } } },
  journey: {
    id: 'welcome', entry: { event: 'Signed Up' }, start: 'wait',
    nodes: {
      wait: { wait: { duration: '1d' }, next: 'mail' },
      mail: { action: { channel: 'email', template: 'welcome' }, next: 'done' },
      done: { exit: {} },
    },
  },
  funnel: {
    id: 'checkout',
    steps: [{ event: 'Product Viewed' }, { event: 'Product Added' }, { event: 'Order Completed' }],
    within: '7d', order: 'strict',
  },
  cohort: {
    id: 'buyers', first: { event: 'Order Completed' }, return: { event: 'Order Completed' }, period: '7d', periods: 8,
  },
  paths: {
    id: 'after_cart', start: { event: 'Cart Viewed' }, events: ['Product Viewed', 'Cart Viewed', 'Order Completed'],
    depth: 3, collapse: true, top: 10,
  },
};

const KINDS = ['segment', 'journey', 'funnel', 'cohort', 'paths'];

/** Links to the editor of the other kinds. */
const NAMES = { segment: 'a segment', journey: 'a journey', funnel: 'a funnel', cohort: 'a cohort', paths: 'a path analysis' };
const others = (kind) => `Write ${KINDS.filter((k) => k !== kind).map((k) => `<a href="#editor/${k}">${NAMES[k]}</a>`).join(', ')} instead`;

/** Shows the editor for `params` (`[kind]` for a new one, `[kind, id]` for an installed one). */
export async function show(main, { signal, params, onError }) {
  const kind = KINDS.includes(params[0]) ? params[0] : 'segment';
  const id = params[1] || null;
  const plural = kind === 'paths' ? kind : `${kind}s`;
  main.innerHTML = `
    <h1>${id ? `Edit ${kind} <span class="id">${escape(id)}</span>` : `New ${kind}`}</h1>
    <p>${others(kind)}</p>
    <div class="editor">
      <div>
        <label for="definition-text">Definition (JSON)</label>
        <textarea id="definition-text" rows="24" spellcheck="false" aria-describedby="validation"></textarea>
        <div class="buttons">
          <button type="button" id="save">${id ? (kind === 'journey' ? 'Save (a draft, or the next version)' : 'Replace') : (kind === 'journey' ? 'Save as a draft' : 'Install')}</button>
          ${id ? '<button type="button" id="remove" class="danger">Remove</button>' : ''}
        </div>
        <p id="editor-status" role="status" aria-live="polite"></p>
      </div>
      <div>
        <h2>Checks</h2>
        <ul id="validation" class="validation" aria-live="polite"></ul>
        ${kind === 'journey' ? '<h2>Preview</h2><ul id="preview-rules" class="rules"></ul><div id="preview" class="graph-box"></div>' : ''}
      </div>
    </div>`;
  const text = main.querySelector('#definition-text');
  const status = main.querySelector('#editor-status');
  const list = main.querySelector('#validation');
  if (id) {
    try {
      const current = await get(path`/v1/${plural}/${id}`);
      if (signal.aborted) return;
      const definition = kind === 'journey' && current.next_version ? current.next_version.definition : current.definition;
      text.value = JSON.stringify(definition, null, 2);
    } catch (e) {
      if (e instanceof Unauthorized) onError(e);
      else if (!signal.aborted) status.textContent = message(e);
      return;
    }
  } else {
    text.value = JSON.stringify(EXAMPLES[kind], null, 2);
  }

  let timer = null, asked = 0;
  const check = async () => {
    const mine = ++asked;
    let definition;
    try {
      definition = JSON.parse(text.value);
    } catch (e) {
      list.innerHTML = `<li class="error"><code>$</code> not JSON: ${escape(e.message)}</li>`;
      return;
    }
    list.innerHTML = '<li>Checking…</li>';
    if (kind === 'journey') {
      try {
        main.querySelector('#preview-rules').innerHTML = rules(definition).map((r) => `<li>${escape(r)}</li>`).join('');
        draw(main.querySelector('#preview'), definition);
      } catch (e) {
        main.querySelector('#preview').textContent = `No preview: ${e.message}`;
      }
    }
    try {
      const answer = await call('POST', path`/v1/validate/${kind}`, text.value);
      if (mine !== asked || signal.aborted) return;
      list.innerHTML = answer.valid
        ? (answer.conflict ? `<li class="error">Valid, but it cannot be saved now: ${escape(answer.conflict)}</li>` : '<li class="ok">Valid.</li>')
        : answer.errors.map((e) => `<li class="error" data-path="${escape(e.path)}"><code>${escape(e.path)}</code> ${escape(e.message)}</li>`).join('');
    } catch (e) {
      if (mine === asked) list.innerHTML = `<li class="error">${escape(message(e))}</li>`;
    }
  };
  text.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(check, PAUSE);
  }, { signal });
  signal.addEventListener('abort', () => clearTimeout(timer));
  check();

  const save = main.querySelector('#save');
  save.addEventListener('click', async () => {
    status.textContent = 'Saving…';
    save.disabled = true;
    try {
      const written = JSON.parse(text.value);
      const answer = id ? await call('PUT', path`/v1/${plural}/${id}`, text.value) : await call('POST', `/v1/${plural}`, text.value);
      const saved = answer?.id ?? written.id;
      if (signal.aborted) return;
      if (answer?.status === 'pending') {
        status.textContent = `Accepted, not applied yet: see ${answer.location}.`;
        return;
      }
      status.textContent = 'Saved.';
      location.hash = path`#${plural}/${saved}`;
    } catch (e) {
      if (!signal.aborted) status.textContent = `Not saved: ${message(e)}`;
    } finally {
      save.disabled = false;
    }
  }, { signal });
  main.querySelector('#remove')?.addEventListener('click', async () => {
    if (!confirm(`Remove ${kind} ${id}?`)) return;
    try {
      await call('DELETE', path`/v1/${plural}/${id}`);
      if (!signal.aborted) location.hash = `#${plural}`;
    } catch (e) {
      if (!signal.aborted) status.textContent = `Not removed: ${message(e)}`;
    }
  }, { signal });
}
