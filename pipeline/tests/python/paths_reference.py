"""Path analysis reports computed from scratch by DuckDB, for the path tests: an evaluation that
shares no code with the engine. Reads a JSON file
{"events": [{"user_id", "ts", "mid", "kind", "name", "props"}], "paths": [...],
"reports": [{"as_of", "paths", "from", "to"}], "retention": ms or null} and prints the reports
as JSON, in the engine's shape.

The rule: at time T the events are those with ts <= T still retained (ts + retention > T),
duplicates once; a user's anchor is their first event matching `start` (or `end`) with ts in
[from, to), in (timestamp, messageId) order; the candidate steps are their events of the
analysis's names (every event but identify calls without names) strictly after (before) the
anchor in that order and, with `within`, at most that far from it; with `collapse`, a
candidate of the same name as the one before it (the anchor, for the first) is left out; the
path is the anchor's name and the first `depth` steps left (leading to the anchor, backwards).
"""


from funnel_reference import duration, run, step_sql


def report(con, d, q, retention):
    as_of, start, end = q["as_of"], q["from"], q["to"]
    after = "start" in d
    anchor = step_sql(d["start"] if after else d["end"])
    depth, top, collapse = d.get("depth", 3), d.get("top", 10), d.get("collapse", False)
    names = d.get("events")
    is_step = "e.kind <> 'identify'" + ("" if names is None else " AND e.name IN (" + ", ".join(
        "'" + n.replace("'", "''") + "'" for n in names) + ")")
    kept = f"e.ts <= {as_of}" + ("" if retention is None else f" AND e.ts + {retention} > {as_of}")
    within = "" if d.get("within") is None else f" AND abs(e.ts - a.ts) <= {duration(d['within'])}"
    side = "(e.ts > a.ts OR (e.ts = a.ts AND e.mid > a.mid))" if after else "(e.ts < a.ts OR (e.ts = a.ts AND e.mid < a.mid))"
    order = "e.ts, e.mid" if after else "e.ts DESC, e.mid DESC"
    # `within` cuts the candidates where the first one too far lies (none beyond it counts).
    rows = con.execute(f"""
      WITH m AS (SELECT e.*, {anchor} AS is_anchor, ({is_step}) AS is_step FROM ev e WHERE {kept}),
      a AS (SELECT user_id, ts, mid, name FROM (
              SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY ts, mid) AS rn FROM m
              WHERE is_anchor AND ts >= {start} AND ts < {end}) WHERE rn = 1),
      c AS (SELECT a.user_id, e.ts, e.mid, e.name, e.is_step,
                   row_number() OVER (PARTITION BY a.user_id ORDER BY {order}) AS i
            FROM a JOIN m e ON e.user_id = a.user_id AND {side} {within}),
      s AS (SELECT *, lag(name, 1) OVER (PARTITION BY user_id ORDER BY i) AS prev FROM c WHERE is_step)
      SELECT a.user_id, a.name, list(s.name ORDER BY s.i) FILTER (WHERE s.name IS NOT NULL) AS steps,
             list(s.prev ORDER BY s.i) FILTER (WHERE s.name IS NOT NULL) AS prevs
      FROM a LEFT JOIN s USING (user_id) GROUP BY a.user_id, a.name""").fetchall()
    counts = {}
    for _, anchor_name, steps, prevs in rows:
        path = [anchor_name]
        for name, prev in zip(steps or [], prevs or []):
            if len(path) > depth:
                break
            before = anchor_name if prev is None else prev
            if collapse and name == before:
                continue
            path.append(name)
        if not after:
            path.reverse()
        counts[tuple(path)] = counts.get(tuple(path), 0) + 1
    users = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], list(kv[0])))
    shown, rest = ranked[:top], ranked[top:]
    nodes, links = {}, {}
    for path, n in shown:
        step = (lambda i: i) if after else (lambda i, p=path: i - (len(p) - 1))
        for i, name in enumerate(path):
            nodes[(step(i), name)] = nodes.get((step(i), name), 0) + n
            if i + 1 < len(path):
                key = ((step(i), name), (step(i + 1), path[i + 1]))
                links[key] = links.get(key, 0) + n
    node_id = lambda k: f"{k[0]}:{k[1]}"  # noqa: E731
    return {
        "paths": d["id"], "as_of": as_of, "from": start, "to": end, "users": users,
        "top": [{"path": list(p), "users": n} for p, n in shown],
        "other": sum(n for _, n in rest),
        "sankey": {
            "nodes": [{"id": node_id(k), "step": k[0], "name": k[1], "users": n} for k, n in sorted(nodes.items())],
            "links": [{"source": node_id(f), "target": node_id(t), "users": n} for (f, t), n in sorted(links.items())],
        },
    }


def main():
    run("paths", "paths", report)


if __name__ == "__main__":
    main()
