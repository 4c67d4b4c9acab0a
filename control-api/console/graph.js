// A journey's graph, laid out by dagre and drawn as SVG: a box per node (its id, its kind, and
// with a report the users there now and those who passed), an edge per way out (labelled:
// the awaited event or the timeout, a branch's case or else, a split's share and, with a
// report, the share of users each way took where it can be told), and the entry, goal and
// exit rule above it. Takes definitions as written, half-written ones too (the editor's).
import dagre from '/console/vendor/dagre-3.1.3/dagre.esm.js';

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 170, HEIGHT = 64;
const ENTRY = '\u0000entry'; // no node id can be this (ids are [a-z0-9_-])

/** The kind of a node as written (`wait`, `wait_until`, ...), or `?`. */
function kindOf(node) {
  return Object.keys(node || {}).find((k) => k !== 'next' && k !== 'if_missing') || '?';
}

/** The ways out of a node: `[target, label]`. */
export function exits(node) {
  const kind = kindOf(node);
  const body = node?.[kind] || {};
  switch (kind) {
    case 'wait': return [[node.next, `after ${body.duration ?? '?'}`]];
    case 'wait_until_time':
      if (body.trait !== undefined) {
        return [[node.next, `at ${body.trait}${body.offset ? ` ${body.offset}` : ''}`], [node.if_missing, 'no time']];
      }
      return [[node.next, `at ${body.at ?? '?'}`]];
    case 'action': return [[node.next, '']];
    case 'wait_until': return [[body.on_event, `event ${describeEvent(body.event)}`], [body.on_timeout, `timeout ${body.timeout ?? '?'}`]];
    case 'branch': return [...(body.cases || []).map((c, i) => [c?.next, `case ${i + 1}`]), [body.else, 'else']];
    case 'split': return (body.branches || []).map((b) => [b?.next, `${b?.percent ?? '?'}%`]);
    default: return [];
  }
}

function describeEvent(filter) {
  if (typeof filter === 'string') return filter;
  if (filter && typeof filter.event === 'string') return filter.event;
  return '';
}

function describeEntry(entry) {
  if (!entry) return 'no entry yet';
  if (entry.event) return `performs ${describeEvent(entry.event)}`;
  if (entry.segment_enter) return `enters segment ${entry.segment_enter}`;
  if (entry.segment_exit) return `leaves segment ${entry.segment_exit}`;
  if (entry.segment && entry.every) {
    return `members of segment ${entry.segment}, every ${entry.every === '1w' ? 'week' : 'day'} at ${entry.at} (${entry.tz || 'UTC'})`;
  }
  if (entry.segment) return `members of segment ${entry.segment} at ${new Date(entry.at).toISOString()}`;
  return JSON.stringify(entry);
}

function detail(kind, body) {
  switch (kind) {
    case 'wait': return `wait ${body?.duration ?? ''}`;
    case 'wait_until_time':
      if (body?.trait !== undefined) return `until trait ${body.trait}${body.offset ? ` ${body.offset}` : ''}`;
      return `until ${body?.at ?? ''} ${body?.tz_trait ? `user's ${body.tz_trait}, else ` : ''}${body?.tz ?? 'UTC'}`;
    case 'wait_until': return `wait for ${describeEvent(body?.event)}`;
    case 'action': return `${body?.channel ?? 'action'}${body?.template ? `: ${body.template}` : ''}`;
    default: return kind;
  }
}

function element(name, attributes, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The rules above the graph: entry, goal, exit rule, as text lines. */
export function rules(definition) {
  const lines = [`Entry: ${describeEntry(definition?.entry)}`];
  if (definition?.goal) lines.push(`Goal: performs ${describeEvent(definition.goal)}`);
  if (definition?.exit_when) lines.push(`Exit rule: leaves when ${JSON.stringify(definition.exit_when)}`);
  return lines;
}

/**
 * Draws `definition` into `box` (replacing what it held), with the counts of `report` (a
 * `/stats` document) if given. Returns the SVG element.
 */
export function draw(box, definition, report) {
  const nodes = (definition && typeof definition.nodes === 'object' && !Array.isArray(definition.nodes) && definition.nodes) || {};
  const has = (id) => typeof id === 'string' && Object.hasOwn(nodes, id);
  const counts = report?.nodes || {};
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: 'TB', nodesep: 40, ranksep: 60, edgesep: 20, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  g.setNode(ENTRY, { width: 110, height: 34 });
  for (const id of Object.keys(nodes)) g.setNode(id, { width: WIDTH, height: HEIGHT });
  if (has(definition?.start)) g.setEdge(ENTRY, definition.start, { width: 10, height: 10, label: '' }, 'entry');
  // Users arriving at a node with one way in came that way: the share each way out took is
  // known for those.
  const incoming = {};
  for (const node of Object.values(nodes)) for (const [to] of exits(node)) incoming[to] = (incoming[to] || 0) + 1;
  for (const [id, node] of Object.entries(nodes)) {
    const kind = kindOf(node);
    const out = exits(node);
    const left = counts[id]?.exited;
    out.forEach(([to, label], i) => {
      if (!has(to)) return;
      let text = label;
      if ((kind === 'branch' || kind === 'split' || kind === 'wait_until') && left > 0 && incoming[to] === 1 && counts[to]) {
        text += ` · ${Math.round((100 * counts[to].entered) / left)}% took it`;
      }
      g.setEdge(id, to, { label: text, width: Math.max(8, text.length * 6.5), height: 16, labelpos: 'c' }, `${id}:${i}`);
    });
  }
  dagre.layout(g);
  const { width, height } = g.graph();
  // Drawn at its own size (no larger), shrunk to the box on a narrow screen.
  const [w, h] = [Math.ceil(Math.max(width, 200)), Math.ceil(Math.max(height, 80))];
  const svg = element('svg', { viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: 'graph', role: 'img',
    'aria-label': `Journey graph of ${Object.keys(nodes).length} node(s)` });
  svg.append(element('defs', {}));
  const marker = element('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(element('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }));
  svg.firstChild.append(marker);
  for (const e of g.edges()) {
    const edge = g.edge(e);
    const d = edge.points.map((p, i) => `${i ? 'L' : 'M'} ${p.x} ${p.y}`).join(' ');
    svg.append(element('path', { d, class: 'edge', 'marker-end': 'url(#arrow)' }));
    if (edge.label) svg.append(element('text', { x: edge.x, y: edge.y + 4, class: 'edge-label', 'text-anchor': 'middle' }, edge.label));
  }
  const entry = g.node(ENTRY);
  const start = element('g', { class: 'entry', transform: `translate(${entry.x - 55},${entry.y - 17})` });
  start.append(element('rect', { width: 110, height: 34, rx: 17 }), element('text', { x: 55, y: 22, 'text-anchor': 'middle' }, 'entry'));
  svg.append(start);
  for (const id of Object.keys(nodes)) {
    const n = g.node(id);
    const kind = kindOf(nodes[id]);
    const group = element('g', { class: `node ${kind}`, 'data-node': id, transform: `translate(${n.x - WIDTH / 2},${n.y - HEIGHT / 2})` });
    const title = element('title', {}, `${id} (${kind})`);
    group.append(title, element('rect', { width: WIDTH, height: HEIGHT, rx: 6 }));
    group.append(element('text', { x: 8, y: 18, class: 'node-id' }, id.length > 22 ? `${id.slice(0, 21)}…` : id));
    group.append(element('text', { x: 8, y: 35, class: 'node-kind' }, detail(kind, nodes[id][kind]).slice(0, 26)));
    if (report) {
      const c = counts[id] || { current: 0, entered: 0 };
      const text = kind === 'exit' ? `${c.current} finished` : `${c.current} here · ${c.entered} passed`;
      group.append(element('text', { x: 8, y: 54, class: 'node-counts', 'data-current': c.current, 'data-entered': c.entered }, text));
    }
    svg.append(group);
  }
  box.replaceChildren(svg);
  return svg;
}
