"""Funnel reports computed from scratch by DuckDB, for the funnel tests: an evaluation that
shares no code with the engine. Reads a JSON file
{"events": [{"user_id", "ts", "mid", "kind", "name", "props"}], "funnels": [...], "reports": [{"as_of", "funnel", "from", "to", "step"}],
"retention": ms or null} and prints the reports as JSON, in the engine's shape.

The counting rule (the issue's): at time T the events are those with ts <= T still retained
(ts + retention > T), duplicates (a repeated messageId) once; each event matching the first
step starts an attempt; each next step is the earliest matching event after the previous
step's (strict) or after the first step's (any order), in (timestamp, messageId) order, within
`within` of the first; a user counts once per bucket, by their first attempt starting in it.
"""

import json
import sys

import duckdb

DURATION = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def duration(text):
    for unit in sorted(DURATION, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * DURATION[unit]
    raise ValueError(text)


OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def step_sql(step):
    """A SQL test of one event filter over the table `e` (numeric properties only)."""
    name = step["event"].replace("'", "''")
    parts = [f"e.kind <> 'identify'", f"e.name = '{name}'"]
    for p in step.get("where", []):
        prop = p["property"].replace("'", "''")
        parts.append(f"TRY_CAST(json_extract(e.props, '$.{prop}') AS DOUBLE) {OPS[p['op']]} {float(p['value'])}")
    return "(" + " AND ".join(parts) + ")"


def attempts_sql(funnel, as_of, retention):
    """Every attempt retained at `as_of`: user, t0, m0, and r1.. rk (reach times, NULL past
    the furthest step)."""
    steps = funnel["steps"]
    within = duration(funnel["within"])
    strict = funnel.get("order", "strict") == "strict"
    kept = f"e.ts <= {as_of}" + ("" if retention is None else f" AND e.ts + {retention} > {as_of}")
    flags = ", ".join(f"{step_sql(s)} AS s{i}" for i, s in enumerate(steps))
    ctes = [f"m AS (SELECT e.user_id, e.ts, e.mid, {flags} FROM ev e WHERE {kept})"]
    # a0: each first step, the previous step's place (ts, mid) and the reach time so far.
    ctes.append("a0 AS (SELECT user_id, ts AS t0, mid AS m0, ts AS pt, mid AS pm, ts AS r0, true AS ok FROM m WHERE s0)")
    cols = ["user_id", "t0", "m0"]
    for k in range(1, len(steps)):
        after = "a.pt, a.pm" if strict else "a.t0, a.m0"
        at, am = after.split(", ")
        ctes.append(
            f"""a{k} AS (SELECT a.* EXCLUDE (pt, pm, ok),
                coalesce(nx.ts, a.pt) AS pt, coalesce(nx.mid, a.pm) AS pm,
                CASE WHEN a.ok AND nx.ts IS NOT NULL THEN greatest(a.r{k - 1}, nx.ts) END AS r{k},
                a.ok AND nx.ts IS NOT NULL AS ok
              FROM a{k - 1} a LEFT JOIN LATERAL (
                SELECT e.ts, e.mid FROM m e
                WHERE e.user_id = a.user_id AND e.s{k}
                  AND (e.ts > {at} OR (e.ts = {at} AND e.mid > {am}))
                  AND e.ts <= a.t0 + {within}
                ORDER BY e.ts, e.mid LIMIT 1) nx ON true)"""
        )
    for k in range(len(steps)):
        cols.append(f"r{k}")
    last = len(steps) - 1
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {', '.join(cols)} FROM a{last}"


def traits_sql(name, as_of):
    """Each user's trait `name` as of `as_of`: the latest identify carrying it (null removes)."""
    key = name.replace("'", "''")
    return f"""SELECT user_id, v FROM (
        SELECT user_id, json_extract(props, '$.{key}') AS v,
               row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, mid DESC) AS rn
        FROM ev WHERE kind = 'identify' AND ts <= {as_of} AND json_exists(props, '$.{key}'))
      WHERE rn = 1 AND v IS NOT NULL AND json_type(v) <> 'NULL'"""


def canonical(text):
    """A breakdown value's JSON text with a whole number written as one (`3.0` is `3`)."""
    if text is None:
        return None
    value = json.loads(text)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return json.dumps(value, ensure_ascii=False)


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    rank = max(1, -(-len(values) * p // 100))
    return values[rank - 1]


def steps_json(names, users, times):
    out = []
    for s, name in enumerate(names):
        prev = users[s] if s == 0 else users[s - 1]
        first = users[0]
        t = times[s - 1] if s > 0 else []
        out.append({
            "event": name,
            "users": users[s],
            "conversion_from_previous": None if prev == 0 else users[s] / prev,
            "conversion_from_first": None if first == 0 else users[s] / first,
            "time_to_convert_ms": {"p50": percentile(t, 50), "p90": percentile(t, 90)} if t else None,
        })
    return out


def report(con, funnel, q, retention):
    names = [s["event"] for s in funnel["steps"]]
    k = len(names)
    as_of, start, end, step = q["as_of"], q["from"], q["to"], q.get("step")
    span = step if step is not None else end - start
    buckets = 1 if step is None else -(-(end - start) // step)
    chosen = f"""SELECT * FROM (
        SELECT a.*, (a.t0 - {start}) // {span} AS bucket,
               row_number() OVER (PARTITION BY a.user_id, (a.t0 - {start}) // {span} ORDER BY a.t0, a.m0) AS rn
        FROM ({attempts_sql(funnel, as_of, retention)}) a
        WHERE a.t0 >= {start} AND a.t0 < {end}) WHERE rn = 1"""
    breakdown = funnel.get("breakdown", {}).get("trait")
    joined = f"SELECT c.*, NULL AS value FROM ({chosen}) c"
    if breakdown:
        joined = f"SELECT c.*, t.v::VARCHAR AS value FROM ({chosen}) c LEFT JOIN ({traits_sql(breakdown, as_of)}) t USING (user_id)"
    rows = con.execute(f"SELECT bucket, value, {', '.join(f'r{i}' for i in range(k))} FROM ({joined})").fetchall()
    cells = {}
    for row in rows:
        bucket, value, reach = row[0], canonical(row[1]), row[2:]
        users, times = cells.setdefault((bucket, value), ([0] * k, [[] for _ in range(k - 1)]))
        for s in range(k):
            if reach[s] is None:
                break
            users[s] += 1
            if s > 0:
                times[s - 1].append(reach[s] - reach[s - 1])
    out = []
    for b in range(buckets):
        b_start = start + (step or 0) * b
        b_end = end if step is None else min(b_start + step, end)
        mine = {value: cell for (bucket, value), cell in cells.items() if bucket == b}
        users = [sum(c[0][s] for c in mine.values()) for s in range(k)]
        times = [[t for c in mine.values() for t in c[1][s]] for s in range(k - 1)]
        bucket = {"start": b_start, "end": b_end, "steps": steps_json(names, users, times)}
        if breakdown:
            ranked = sorted(mine.items(), key=lambda kv: (-kv[1][0][0], (0, "") if kv[0] is None else (1, kv[0])))
            bucket["breakdown"] = [
                {"value": None if v is None else json.loads(v), "steps": steps_json(names, c[0], c[1])}
                for v, c in ranked[:50]
            ]
            if len(ranked) > 50:
                rest = ranked[50:]
                users = [sum(c[0][s] for _, c in rest) for s in range(k)]
                times = [[t for _, c in rest for t in c[1][s]] for s in range(k - 1)]
                bucket["other"] = {"values": len(rest), "steps": steps_json(names, users, times)}
        out.append(bucket)
    return {"funnel": funnel["id"], "as_of": as_of, "from": start, "to": end, "step": step, "buckets": out}


def run(kind, key, make):
    """Reads the input file named on the command line into the table `ev` (a repeated
    messageId once: the tests repeat events whole) and prints `make`'s report of each asked,
    the definition `spec[key][q[kind]]`."""
    spec = json.load(open(sys.argv[1]))
    con = duckdb.connect()
    con.execute("CREATE TABLE raw (user_id VARCHAR, ts BIGINT, mid VARCHAR, kind VARCHAR, name VARCHAR, props JSON)")
    rows = [(e["user_id"], e["ts"], e["mid"], e["kind"], e["name"], json.dumps(e["props"])) for e in spec["events"]]
    if rows:
        con.executemany("INSERT INTO raw VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.execute("CREATE TABLE ev AS SELECT DISTINCT ON (mid) * FROM raw ORDER BY mid, ts")
    reports = [make(con, spec[key][q[kind]], q, spec.get("retention")) for q in spec["reports"]]
    json.dump(reports, sys.stdout)


def main():
    run("funnel", "funnels", report)


if __name__ == "__main__":
    main()
