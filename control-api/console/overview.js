// The overview: events per second in and processed, the watermark and its lag, each source's
// lag, what was refused or dropped, and what memory holds; from /v1/streams/overview, live,
// with the last five minutes of rates drawn by uPlot.
import { follow } from '/console/api.js';
import { cell, ago, instant, escape, number, chart, atLeast } from '/console/ui.js';

const KEEP = 300; // seconds of rates drawn
const LATEST = 5; // dead letters shown

/** Shows the overview in `main` until `signal` aborts. */
export function show(main, { onState, onError, signal }) {
  main.innerHTML = `
    <h1>Overview</h1>
    <section class="figures" aria-label="Throughput">
      ${cell('events in / s', 'in-rate')}${cell('processed / s', 'processed-rate')}
      ${cell('events in', 'events-in')}${cell('processed', 'events-processed')}
    </section>
    <section aria-labelledby="rates-title">
      <h2 id="rates-title">Events per second</h2>
      <div id="rates" class="chart" role="img" aria-label="Events per second in and processed, last five minutes"></div>
    </section>
    <section class="figures" aria-label="Time">
      ${cell('watermark', 'watermark')}${cell('watermark lag', 'lag')}${cell('outputs durable through', 'durable')}
    </section>
    <section class="figures" aria-label="Refused and dropped">
      ${cell('rejected', 'rejected')}${cell('late', 'late')}${cell('duplicates', 'duplicates')}
      ${cell('suppressed', 'suppressed')}${cell('dead letters', 'dead-letters')}
    </section>
    <section class="figures" aria-label="Memory">
      ${cell('arranged records', 'arranged')}${cell('user ids held', 'user-ids')}
      ${cell('segments', 'segments')}${cell('journeys', 'journeys')}${cell('processes', 'processes')}
    </section>
    <section aria-labelledby="dead-title">
      <h2 id="dead-title">Latest dead letters</h2>
      <table id="dead-letters"><thead><tr><th scope="col">source</th><th scope="col">offset</th><th scope="col">error</th><th scope="col">record</th></tr></thead>
      <tbody><tr><td colspan="4">none since this page opened</td></tr></tbody></table>
    </section>
    <section aria-labelledby="sources-title">
      <h2 id="sources-title">Sources</h2>
      <table id="sources"><thead><tr><th scope="col">source</th><th scope="col">process</th><th scope="col">partition</th><th scope="col">lag</th></tr></thead><tbody></tbody></table>
    </section>`;
  const times = [], rateIn = [], rateProcessed = [];
  const rates = chart(main.querySelector('#rates'), ['in', 'processed'], [times, rateIn, rateProcessed],
    { range: atLeast(KEEP), signal });

  let last = null;
  const set = (id, text) => { main.querySelector(`#${id}`).textContent = text; };
  follow('/v1/streams/overview', (name, o) => {
    if (name !== 'overview') return;
    if (last && o.time > last.time) {
      const seconds = (o.time - last.time) / 1000;
      const inRate = Math.max(0, (o.events_in - last.events_in) / seconds);
      const processedRate = Math.max(0, (o.events_processed - last.events_processed) / seconds);
      times.push(o.time / 1000); rateIn.push(inRate); rateProcessed.push(processedRate);
      if (times.length > KEEP) { times.shift(); rateIn.shift(); rateProcessed.shift(); }
      rates.setData([times, rateIn, rateProcessed]);
      set('in-rate', number.format(Math.round(inRate)));
      set('processed-rate', number.format(Math.round(processedRate)));
    }
    last = o;
    set('events-in', number.format(o.events_in));
    set('events-processed', number.format(o.events_processed));
    set('watermark', o.watermark ? instant(o.watermark) : 'none yet');
    set('lag', o.watermark ? ago(o.watermark_lag_ms) : '–');
    set('durable', o.durable ? instant(o.durable) : 'none yet');
    for (const [id, key] of [['rejected', 'rejected'], ['late', 'late'], ['duplicates', 'duplicates'],
      ['suppressed', 'suppressed'], ['dead-letters', 'dead_letters'], ['arranged', 'arranged_records'],
      ['user-ids', 'user_ids'], ['segments', 'segments'], ['journeys', 'journeys'], ['processes', 'processes']]) {
      set(id, number.format(o[key]));
    }
    main.querySelector('#sources tbody').innerHTML = o.sources.map((s) => s.source === 'http'
      ? `<tr><td>HTTP ingest log</td><td>${s.process}</td><td>${s.partition}</td><td>${number.format(s.lag_bytes)} bytes</td></tr>`
      : `<tr><td>Kafka ${escape(s.topic)}</td><td>${s.process}</td><td>${s.partition}</td><td>${number.format(s.lag_messages)} messages</td></tr>`)
      .join('') || '<tr><td colspan="4">none</td></tr>';
  }, onState, signal).catch(onError);

  const dead = [];
  follow('/v1/streams/dead-letters', (name, d) => {
    if (name !== 'dead_letter') return;
    dead.unshift(d);
    dead.length = Math.min(dead.length, LATEST);
    main.querySelector('#dead-letters tbody').innerHTML = dead.map((d) =>
      `<tr><td>${escape(d.source)}</td><td>${d.offset}</td><td>${escape(d.error)}</td><td><code>${escape(d.line)}</code></td></tr>`).join('');
  }, () => {}, signal).catch(() => {});
}
