// The console's one way to the server: the documented API under /v1, with the API token the
// user gave (kept in sessionStorage, for this tab only), and its live streams read with fetch
// (a browser's EventSource cannot send the token) through eventsource-parser.
import { createParser } from '/console/vendor/eventsource-parser-4.1.3/index.js';

const KEY = 'journeyflow-token';

/** Thrown when the server wants a token this tab does not have (or a wrong one). */
export class Unauthorized extends Error {
  constructor() {
    super('the API token is missing or wrong');
  }
}

/** An answer that is not a success: its status, its problem document's detail and errors. */
export class Refused extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `the server answered ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];
  }
}

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

/** The body of `answer` as JSON, or null when it has none or another type. */
async function body(answer) {
  const type = answer.headers.get('content-type') || '';
  if (!type.includes('json')) return null;
  try {
    return await answer.json();
  } catch {
    return null;
  }
}

/**
 * Sends `method path` (with `payload` as JSON, if given); resolves to the answer's JSON body
 * (null for none), throws Unauthorized or Refused.
 */
export async function call(method, path, payload) {
  const init = { method, headers: headers() };
  if (payload !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = typeof payload === 'string' ? payload : JSON.stringify(payload);
  }
  const answer = await fetch(path, init);
  if (answer.status === 401) throw new Unauthorized();
  const document = await body(answer);
  if (!answer.ok) throw new Refused(answer.status, document);
  return document;
}

/** GET `path` as JSON. */
export function get(path) {
  return call('GET', path);
}

/**
 * Follows the live stream at `path`: `onEvent(name, document)` for each event, `onState(text)`
 * as the connection comes and goes. Reconnects after a drop (a second, doubling to thirty);
 * stops for good when `signal` aborts, the stream says `removed`, or the server refuses it
 * for a reason waiting will not mend (a 4xx but 429); throws Unauthorized.
 */
export async function follow(path, onEvent, onState, signal) {
  let wait = 1000;
  while (!signal.aborted) {
    let ended = false;
    // Each attempt has its own controller: a dropped attempt's body is let go, not left open.
    const attempt = new AbortController();
    const stop = () => attempt.abort();
    signal.addEventListener('abort', stop, { once: true });
    let reader = null;
    try {
      const answer = await fetch(path, { headers: { ...headers(), accept: 'text/event-stream' }, signal: attempt.signal });
      if (answer.status === 401) throw new Unauthorized();
      if (!answer.ok) {
        const refused = new Refused(answer.status, await body(answer));
        if (answer.status >= 400 && answer.status < 500 && answer.status !== 429) throw refused;
        onState(refused.message);
      } else {
        onState('live');
        wait = 1000;
        const parser = createParser({
          onEvent(event) {
            if (signal.aborted) return;
            if (event.event === 'removed') ended = true;
            try {
              onEvent(event.event || 'message', JSON.parse(event.data));
            } catch (e) {
              console.error('journeyflow: an event not understood', e);
            }
          },
        });
        reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.feed(value);
        }
      }
    } catch (e) {
      if (e instanceof Unauthorized || e instanceof Refused) throw e;
      if (signal.aborted) return;
    } finally {
      signal.removeEventListener('abort', stop);
      attempt.abort();
      reader?.cancel().catch(() => {});
    }
    if (ended) return;
    onState('reconnecting');
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 30000);
  }
}
