// The overview: events per second in and processed, the watermark and its lag, each source's
// lag, what was refused or dropped, and what memory holds; from /v1/streams/overview, live,
// with the last five minutes of rates drawn by uPlot.
import uPlot from '/console/vendor/uplot-1.6.32/uPlot.esm.js';
import { follow } from '/console/api.js';

const KEEP = 300; // seconds of rates drawn

const number = new Intl.NumberFormat();

function cell(label, id) {
  return `<div class="figure"><span class="label">${label}</span><span class="value" id="${id}">–</span></div>`;
}

function ago(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7200000) return `${Math.round(ms / 60000)} min`;
  if (ms < 172800000) return `${Math.round(ms / 3600000)} h`;
  return `${Math.round(ms / 86400000)} d`;
}

function instant(ms) {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Shows the overview in `main` until `signal` aborts. */
export function show(main, onState, signal) {
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
    </section>
    <section aria-labelledby="sources-title">
      <h2 id="sources-title">Sources</h2>
      <table id="sources"><thead><tr><th scope="col">source</th><th scope="col">partition</th><th scope="col">lag</th></tr></thead><tbody></tbody></table>
    </section>`;
  const times = [], rateIn = [], rateProcessed = [];
  const style = getComputedStyle(document.documentElement);
  const chartBox = main.querySelector('#rates');
  const chart = new uPlot({
    width: Math.max(chartBox.clientWidth, 280),
    height: 200,
    series: [
      {},
      { label: 'in', stroke: style.getPropertyValue('--accent').trim() || '#2563eb', width: 2 },
      { label: 'processed', stroke: style.getPropertyValue('--second').trim() || '#16a34a', width: 2 },
    ],
    // The last five minutes, however few points there are yet.
    scales: { x: { time: true, range: (u, min, max) => { const end = max ?? Date.now() / 1000; return [end - KEEP, end]; } } },
    axes: [{}, { size: 60 }],
  }, [times, rateIn, rateProcessed], chartBox);
  const resize = () => chart.setSize({ width: Math.max(chartBox.clientWidth, 280), height: 200 });
  window.addEventListener('resize', resize, { signal });

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
      chart.setData([times, rateIn, rateProcessed]);
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
      ['user-ids', 'user_ids']]) {
      set(id, number.format(o[key]));
    }
    main.querySelector('#sources tbody').innerHTML = o.sources.map((s) => s.source === 'http'
      ? `<tr><td>HTTP ingest log</td><td>${s.partition}</td><td>${number.format(s.lag_bytes)} bytes</td></tr>`
      : `<tr><td>Kafka ${escape(s.topic)}</td><td>${s.partition}</td><td>${number.format(s.lag_messages)} messages</td></tr>`)
      .join('') || '<tr><td colspan="3">none</td></tr>';
  }, onState, signal).catch((e) => onState(e.message));
}
