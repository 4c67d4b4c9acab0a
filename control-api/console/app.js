// The console's shell: asks for the API token when the server wants one, shows the page the
// location's hash names (#overview, #segments[/id], #users[/id], #journeys[/id], #funnels[/id],
// #cohorts[/id], #paths[/id], #editor/segment|journey|funnel|cohort|paths[/id]), marks it in the navigation, and says whether its streams are
// live.
import { get, setToken, hasToken, forgetToken, Unauthorized } from '/console/api.js';
import { message } from '/console/ui.js';
import * as overview from '/console/overview.js';
import * as segments from '/console/segments.js';
import * as segment from '/console/segment.js';
import * as users from '/console/users.js';
import * as journeys from '/console/journeys.js';
import * as journey from '/console/journey.js';
import * as editor from '/console/editor.js';
import * as funnels from '/console/funnels.js';
import * as funnel from '/console/funnel.js';
import * as cohorts from '/console/cohorts.js';
import * as cohort from '/console/cohort.js';
import * as pathsList from '/console/paths.js';
import * as pathReport from '/console/pathreport.js';

const main = document.getElementById('main');
const connection = document.getElementById('connection');
const dialog = document.getElementById('token-dialog');
let current = null;

function onState(text) {
  connection.textContent = text;
  connection.dataset.state = text;
}

function askToken(text) {
  forgetToken();
  document.getElementById('token-error').textContent = text || '';
  if (!dialog.open) dialog.showModal();
}

/** The page for a hash: `[module, section, params]`. */
function route(hash) {
  let parts;
  try {
    parts = hash.replace(/^#/, '').split('/').map(decodeURIComponent);
  } catch {
    parts = []; // a malformed hash: the overview
  }
  const [section, ...rest] = parts;
  switch (section) {
    case 'segments': return rest.length ? [segment, 'segments', rest] : [segments, 'segments', []];
    case 'users': return [users, 'users', rest];
    case 'journeys': return rest.length ? [journey, 'journeys', rest] : [journeys, 'journeys', []];
    case 'funnels': return rest.length ? [funnel, 'funnels', rest] : [funnels, 'funnels', []];
    case 'cohorts': return rest.length ? [cohort, 'cohorts', rest] : [cohorts, 'cohorts', []];
    case 'paths': return rest.length ? [pathReport, 'paths', rest] : [pathsList, 'paths', []];
    case 'editor': return [editor, 'editor', rest];
    default: return [overview, 'overview', []];
  }
}

/** Shows the page the hash names (moving the focus to it when `focus`: after a navigation). */
function render(focus) {
  current?.abort();
  current = new AbortController();
  const signal = current.signal;
  const [page, section, params] = route(location.hash);
  for (const link of document.querySelectorAll('header nav a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  main.replaceChildren();
  onState('');
  // A page's streams say how they are (`onState`) and why they stopped (`onError`).
  const onError = (e) => {
    if (signal.aborted) return;
    if (e instanceof Unauthorized) askToken('The token was not accepted.');
    else onState(message(e));
  };
  Promise.resolve(page.show(main, { onState, onError, signal, params })).catch(onError);
  if (focus) main.focus({ preventScroll: true });
}

document.getElementById('token-form').addEventListener('submit', () => {
  setToken(document.getElementById('token').value);
  document.getElementById('token').value = '';
  start();
});

async function start() {
  const given = hasToken();
  try {
    await get('/v1/segments');
  } catch (e) {
    if (e instanceof Unauthorized) return askToken(given ? 'The token was not accepted.' : '');
    onState(message(e));
  }
  render(false);
}

// The skip link moves the focus to the content, and leaves the page as it is.
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});
// The token is needed: the dialog cannot be dismissed without one.
dialog.addEventListener('cancel', (e) => e.preventDefault());
window.addEventListener('hashchange', () => render(true));
start();
