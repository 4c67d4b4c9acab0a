// The console's shell: asks for the API token when the server wants one, then shows the
// page the location names (the overview for now), and says whether its stream is live.
import { get, setToken, hasToken, forgetToken, Unauthorized } from '/console/api.js';
import * as overview from '/console/overview.js';

const main = document.getElementById('main');
const connection = document.getElementById('connection');
const dialog = document.getElementById('token-dialog');
let current = null;

function onState(text) {
  connection.textContent = text;
  connection.dataset.state = text;
  if (text === 'the API token is missing or wrong') askToken('The token was not accepted.');
}

function askToken(message) {
  forgetToken();
  document.getElementById('token-error').textContent = message || '';
  if (!dialog.open) dialog.showModal();
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
    onState(e.message);
  }
  current?.abort();
  current = new AbortController();
  overview.show(main, onState, current.signal);
}

start();
