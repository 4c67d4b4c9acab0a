// A Sankey diagram of a path analysis's top paths, laid out by dagre (left to right, a column
// per step from the anchor) and drawn as SVG: a bar per node as tall as its users, and a band
// per link as wide as its users, from the right of one node to the left of the next.
import dagre from '/console/vendor/dagre-3.1.3/dagre.esm.js';

const SVG = 'http://www.w3.org/2000/svg';
const BAR = 14; // a node's width
const TALLEST = 160; // the most users' node's height

function element(name, attributes, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Draws `sankey` (`{nodes: [{id, step, name, users}], links: [{source, target, users}]}`) into `box`. */
export function sankey(box, { nodes, links }) {
  const most = Math.max(1, ...nodes.map((n) => n.users));
  const size = (users) => Math.max(2, (TALLEST * users) / most);
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 18, ranksep: 150, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n.id, { width: BAR, height: size(n.users) });
  for (const l of links) g.setEdge(l.source, l.target, { weight: l.users, minlen: 1 });
  dagre.layout(g);
  const { width, height } = g.graph();
  const [w, h] = [Math.ceil(Math.max(width + 140, 300)), Math.ceil(Math.max(height, 80))];
  const svg = element('svg', { viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: 'sankey', role: 'img',
    'aria-label': `Sankey diagram of ${nodes.length} step(s)` });
  // Each node's bands leave (and arrive) stacked from its top, in the order of the links.
  const out = {}, into = {};
  for (const l of links) {
    const from = g.node(l.source), to = g.node(l.target);
    if (!from || !to) continue;
    const band = size(l.users);
    const y0 = from.y - from.height / 2 + (out[l.source] || 0) + band / 2;
    const y1 = to.y - to.height / 2 + (into[l.target] || 0) + band / 2;
    out[l.source] = (out[l.source] || 0) + band;
    into[l.target] = (into[l.target] || 0) + band;
    const [x0, x1] = [from.x + BAR / 2, to.x - BAR / 2];
    const mid = (x0 + x1) / 2;
    const path = element('path', { d: `M ${x0} ${y0} C ${mid} ${y0}, ${mid} ${y1}, ${x1} ${y1}`, class: 'band',
      'stroke-width': band, 'data-source': l.source, 'data-target': l.target, 'data-users': l.users });
    path.append(element('title', {}, `${l.source} → ${l.target}: ${l.users} user(s)`));
    svg.append(path);
  }
  for (const n of nodes) {
    const p = g.node(n.id);
    const group = element('g', { class: 'sankey-node', 'data-node': n.id, 'data-users': n.users });
    group.append(element('rect', { x: p.x - BAR / 2, y: p.y - p.height / 2, width: BAR, height: p.height, rx: 2 }));
    group.append(element('text', { x: p.x + BAR, y: p.y + 4 }, `${n.name} (${n.users})`));
    group.append(element('title', {}, `step ${n.step}: ${n.name}, ${n.users} user(s)`));
    svg.append(group);
  }
  box.replaceChildren(svg);
  return svg;
}
