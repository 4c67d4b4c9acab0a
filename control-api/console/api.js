// The console's one way to the server: the documented API under /v1, with the API token the
// user gave (kept in sessionStorage, for this tab only), and its live streams read with fetch
// (a browser's EventSource cannot send the token) through eventsource-parser.
import { createParser } from '/console/vendor/eventsource-parser-4.1.3/index.js';

const KEY = 'journeyflow-token';

/** Thrown when the server wants a token this tab does not have (or a wrong one). */
export class Unauthorized extends Error {}

function headers() {
  const token = sessionStorage.getItem(KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

export function setToken(token) {
  sessionStorage.setItem(KEY, token);
}

export function hasToken() {
  return sessionStorage.getItem(KEY) !== null;
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

/** GET `path` as JSON; a problem document becomes an Error with its detail. */
export async function get(path) {
  const answer = await fetch(path, { headers: headers() });
  if (answer.status === 401) throw new Unauthorized('the API token is missing or wrong');
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.detail || body.title || `${answer.status}`);
  return body;
}

/**
 * Follows the live stream at `path`: `onEvent(name, document)` for each event, `onState(text)`
 * as the connection comes and goes. Reconnects after a drop (a second, doubling to thirty);
 * stops for good when `signal` aborts or the stream says `removed`.
 */
export async function follow(path, onEvent, onState, signal) {
  let wait = 1000;
  while (!signal.aborted) {
    let ended = false;
    try {
      const answer = await fetch(path, { headers: { ...headers(), accept: 'text/event-stream' }, signal });
      if (answer.status === 401) throw new Unauthorized('the API token is missing or wrong');
      if (!answer.ok) throw new Error(`${answer.status}`);
      onState('live');
      wait = 1000;
      const parser = createParser({
        onEvent(event) {
          if (event.event === 'removed') ended = true;
          onEvent(event.event || 'message', JSON.parse(event.data));
        },
      });
      const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      if (signal.aborted) return;
    }
    if (ended) return;
    onState('reconnecting');
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 30000);
  }
}
