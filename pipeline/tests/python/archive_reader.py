"""Reads journeyflow's Parquet archive as a data team would, with pyarrow and with DuckDB:

    archive_reader.py DIR KIND OUT

writes the rows of KIND (read by pyarrow as a Hive-partitioned dataset) to OUT as NDJSON,
and prints what DuckDB counts over the same files: `rows distinct_ids dt_values`.
"""

import json
import os
import sys

import duckdb
import pyarrow.dataset as ds


def main(root, kind, out):
    if not os.path.isdir(f"{root}/{kind}"):
        # Nothing of this kind was archived.
        open(out, "w").close()
        print(0, 0, 0)
        return
    dataset = ds.dataset(f"{root}/{kind}", format="parquet", partitioning="hive")
    table = dataset.to_table()
    with open(out, "w") as f:
        for row in table.to_pylist():
            row.pop("dt", None)
            row.pop("hour", None)
            f.write(json.dumps(row) + "\n")
    distinct = "count(DISTINCT id)" if "id" in table.column_names else "count(DISTINCT message_id)"
    rows, ids, days = duckdb.sql(
        f"SELECT count(*), {distinct}, count(DISTINCT dt) "
        f"FROM read_parquet('{root}/{kind}/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0]
    print(rows, ids, days)


if __name__ == "__main__":
    main(*sys.argv[1:])
