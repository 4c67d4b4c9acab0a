//! The soak benchmark, shortened: 20,000 events of 2,000 users streamed through `journeyflow
//! run` (the debug build the test suite built) over three retentions of event time; every
//! segment change, transition and action it wrote through the last event equals what
//! `journeyflow replay` writes over the same events, with events expiring all along.
//! Boundedness is not asserted yet: the data directory grows with the stream (checkpoints
//! keep every event, output files are not rotated), as `benches/README.md` reports.

use journeyflow_benches::soak::{run, SoakConfig};
use std::time::Duration;

#[test]
fn a_soak_over_three_retentions_writes_what_replay_writes() {
    // target/debug/deps/soak-<hash> → target/debug/journeyflow
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(|d| d.parent()).unwrap().join("journeyflow");
    assert!(binary.exists(), "{} is not built", binary.display());
    let scratch = tempfile::tempdir().unwrap();
    let config = SoakConfig {
        events: 20_000,
        users: 2_000,
        retention: 30 * 86_400_000,
        seconds: 10.0,
        idle: Duration::from_secs(3),
        binary,
        scratch: scratch.path().to_path_buf(),
    };
    let report = run(&config).unwrap();
    eprintln!("{}", report.summary());
    assert_eq!(report.at_retentions.len(), 3, "{:?}", report.at_retentions);
    for (kind, both, run_only, replay_only) in &report.compared {
        assert!(*both > 0, "{kind}: nothing to compare");
        assert_eq!((*run_only, *replay_only), (0, 0), "{kind}: the run and replay differ");
    }
}
