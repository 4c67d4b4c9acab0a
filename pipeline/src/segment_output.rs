//! Segment changes as sinks write them: one line per user entering or leaving a segment.

use serde::Serialize;

/// One line of `segment_changes.ndjson` (and of the segment changes topic).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeLine<'a> {
    /// Segment id.
    pub segment: &'a str,
    /// User id.
    pub user_id: &'a str,
    /// `enter` or `exit`.
    pub change: &'static str,
    /// Event time, epoch ms.
    pub time: u64,
    /// `deleted` for an exit because the user was deleted; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl<'a> ChangeLine<'a> {
    /// The line of a change by `diff` (positive: the user entered).
    pub fn new(segment: &'a str, user_id: &'a str, diff: isize, time: u64) -> ChangeLine<'a> {
        ChangeLine { segment, user_id, change: if diff > 0 { "enter" } else { "exit" }, time, reason: None }
    }

    /// The same line, marked as caused by the user's deletion when `deleted`.
    pub fn deleted(self, deleted: bool) -> ChangeLine<'a> {
        ChangeLine { reason: deleted.then_some("deleted"), ..self }
    }
}
