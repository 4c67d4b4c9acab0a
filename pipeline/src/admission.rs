//! How events are admitted into the engine: the ingest settings (watermark lateness, the
//! late-event policy, the deduplication window, how long an event counts) and the rule that
//! enters an event at its own time, clamps a late one to the watermark, or refuses it.

use journeyflow_operators::Time;
use serde::Serialize;

/// What to do with an event older than the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatePolicy {
    /// Reject it to the dead-letter output with the reason.
    DeadLetter,
    /// Process it at the watermark (its windows still end at its own timestamp + window).
    Clamp,
}

/// Settings of the ingest side of the engine.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct IngestConfig {
    /// The watermark trails the largest event time seen by this much; `None` holds it until the end.
    pub allowed_lateness: Option<Time>,
    /// Late events: dead-letter or clamp.
    pub late_policy: LatePolicy,
    /// A repeated messageId within this much event time is a duplicate.
    pub dedup_window: Time,
    /// An event counts this long after its timestamp (`None`: forever): for windows, for the
    /// universe, for installs over the history. A user is forgotten, traits and all, when none
    /// of their events counts any more.
    pub retention: Option<Time>,
}

/// The default event retention: 90 days.
pub const DEFAULT_RETENTION: Time = 90 * 86_400_000;

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            allowed_lateness: Some(3_600_000),
            late_policy: LatePolicy::DeadLetter,
            dedup_window: 86_400_000,
            retention: Some(DEFAULT_RETENTION),
        }
    }
}

/// Why `offer` refused an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Older than the watermark under the dead-letter policy.
    #[error("late event: timestamp {ts} is behind the watermark {watermark}")]
    Late {
        /// The event's time.
        ts: Time,
        /// The input's time when it arrived.
        watermark: Time,
    },
}

/// The time an event enters the dataflow at: its own, or under `Clamp` the watermark when it
/// is late; `Err` when it is late under `DeadLetter`.
pub fn admit(policy: LatePolicy, ts: Time, watermark: Time) -> Result<Time, Refused> {
    match (ts >= watermark, policy) {
        (true, _) => Ok(ts),
        (false, LatePolicy::Clamp) => Ok(watermark),
        (false, LatePolicy::DeadLetter) => Err(Refused::Late { ts, watermark }),
    }
}
