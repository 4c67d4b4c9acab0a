//! `journeyflow-bench` end to end on a small data set: it runs every measurement, checks
//! them against the from-scratch recomputation (it exits non-zero otherwise), and writes a
//! complete `result.json`, the summary and two SVG plots.

use serde_json::Value as J;
use std::process::Command;

#[test]
fn a_small_run_writes_every_figure_and_verified_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result");
    let status = Command::new(env!("CARGO_BIN_EXE_journeyflow-bench"))
        .args(["--sizes", "20000:2000", "--shapes", "1x1,2x1", "--paced-seconds", "0.3", "--out"])
        .arg(&out)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let result: J = serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    let rows = |key: &str| result[key].as_array().unwrap_or_else(|| panic!("{key}: {result}")).clone();
    // Three definitions sets for each of the two shapes (one process, two processes).
    let throughput = rows("throughput_events_per_s");
    assert_eq!(throughput.len(), 6);
    assert!(throughput.iter().all(|r| r["events_per_s"].as_f64().unwrap() > 0.0));
    // Three offered loads for each shape, each with samples and ordered percentiles.
    let latency = rows("latency_ms");
    assert_eq!(latency.len(), 6);
    for r in &latency {
        assert!(r["measured"].as_u64().unwrap() > 0, "{r}");
        let p: Vec<f64> = ["p50", "p99", "p999", "max"].iter().map(|k| r[*k].as_f64().unwrap()).collect();
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "{r}");
    }
    let installs = rows("install_ms");
    assert_eq!(installs.len(), 2);
    assert!(installs.iter().all(|r| r["members"].as_u64().unwrap() > 0));
    let recompute = rows("recompute_s");
    assert_eq!(recompute.len(), 1);
    let sizes = recompute[0]["sizes"].as_object().unwrap();
    assert_eq!(sizes.len(), 7, "S1-S6 and the installed segment");
    assert!(sizes.values().filter(|n| n.as_u64().unwrap() > 0).count() >= 6, "{sizes:?}");
    assert!(result["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert!(result["machine"]["cores"].as_u64().unwrap() > 0);
    for plot in ["latency.svg", "throughput.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{plot}");
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("## Freshness") && summary.contains("## Install"), "{summary}");
    // Two processes: each shape's rows, and its speed-up over one process of one worker.
    assert!(throughput.iter().any(|r| r["shape"] == serde_json::json!({"processes": 2, "workers": 1})));
    assert!(summary.contains("| 2x1 |"), "{summary}");
}
