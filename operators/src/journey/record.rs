//! What journey operators emit: transitions, actions, and the lifecycle commands they obey.
//! Records name users by key and nodes by index; sinks turn them into text with the plan.

use crate::Time;
use journeyflow_types::Key;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Why a user moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// Entered (from outside, or restarting under `always` re-entry).
    Entry,
    /// Entered at an occurrence of a scheduled entry.
    Scheduled,
    /// Entered by a request from outside (`POST /v1/journeys/{id}/entries`, a replay's entries).
    Api,
    /// A wait ended, or an action was sent.
    Next,
    /// The awaited event came.
    Event,
    /// The awaited event did not come in time.
    Timeout,
    /// Branch case `i` held.
    Case(u32),
    /// No branch case held.
    Else,
    /// Split share `i`.
    Split(u32),
    /// The goal was performed.
    Goal,
    /// The exit rule holds.
    ExitWhen,
    /// The journey ended.
    Ended,
    /// Placed by the publication of a new version; the payload is the version left, whose
    /// node `from` names.
    Migrated(u32),
    /// The user was deleted.
    Deleted,
    /// A wait until a trait's time found no time in the trait.
    Missing,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Entry => f.write_str("entry"),
            Reason::Scheduled => f.write_str("scheduled"),
            Reason::Api => f.write_str("api"),
            Reason::Next => f.write_str("next"),
            Reason::Event => f.write_str("event"),
            Reason::Timeout => f.write_str("timeout"),
            Reason::Case(i) => write!(f, "case:{i}"),
            Reason::Else => f.write_str("else"),
            Reason::Split(i) => write!(f, "split:{i}"),
            Reason::Goal => f.write_str("goal"),
            Reason::ExitWhen => f.write_str("exit_when"),
            Reason::Ended => f.write_str("ended"),
            Reason::Migrated(_) => f.write_str("migrated"),
            Reason::Deleted => f.write_str("deleted"),
            Reason::Missing => f.write_str("missing"),
        }
    }
}

/// One move of one user: from a node (or outside) to a node (or outside).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Transition {
    /// Journey index in the engine.
    pub journey: u32,
    /// Journey version.
    pub version: u32,
    /// The user.
    pub user: Key,
    /// Node index left, `None` when entering.
    pub from: Option<u32>,
    /// Node index reached, `None` when leaving.
    pub to: Option<u32>,
    /// Event time.
    pub time: Time,
    /// Why.
    pub reason: Reason,
}

/// What became of an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ActionStatus {
    /// Sent.
    Sent,
    /// Over the frequency cap: not sent.
    SuppressedByCap,
    /// Inside quiet hours: it will be sent (or suppressed) when they end.
    HeldQuietHours,
    /// Its payload reads a value the user does not have: not sent.
    FailedMissingData,
    /// Its payload could not be rendered for another reason (a type error, out of fuel).
    FailedRender,
    /// Over the journey's quota: not sent.
    SuppressedByQuota,
}

impl ActionStatus {
    /// The status as written in outputs.
    pub fn name(self) -> &'static str {
        match self {
            ActionStatus::Sent => "sent",
            ActionStatus::SuppressedByCap => "suppressed_by_cap",
            ActionStatus::HeldQuietHours => "held_quiet_hours",
            ActionStatus::FailedMissingData => "failed_missing_data",
            ActionStatus::FailedRender => "failed_render",
            ActionStatus::SuppressedByQuota => "suppressed_by_quota",
        }
    }
}

/// What an action's templates became (only for payloads with templates, when sent or failed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Rendered {
    /// The payload, rendered, as JSON text.
    Payload(Arc<str>),
    /// Why it could not be: the missing value's path, or the template engine's message.
    Error(Arc<str>),
}

/// One action record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Journey index in the engine.
    pub journey: u32,
    /// Journey version.
    pub version: u32,
    /// The user.
    pub user: Key,
    /// The action node's index.
    pub node: u32,
    /// When the user reached the node (part of the action id).
    pub reached: Time,
    /// When this record happened.
    pub time: Time,
    /// What happened.
    pub status: ActionStatus,
    /// The payload rendered, or why not.
    pub rendered: Option<Rendered>,
}

/// A conversion: a user inside performed the goal (their `goal` transition comes with it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Conversion {
    /// Journey index in the engine.
    pub journey: u32,
    /// Journey version.
    pub version: u32,
    /// The user.
    pub user: Key,
    /// The node the user was at.
    pub node: u32,
    /// When.
    pub time: Time,
    /// What it is worth, in millionths (the goal's `value` property; 0 without one).
    pub value: i64,
    /// The split branches `(node, branch)` the user took since entering.
    pub splits: Arc<[(u32, u32)]>,
}

/// A journey operator's output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JourneyOutput {
    /// A move.
    Transition(Transition),
    /// An action.
    Action(ActionRecord),
    /// A conversion, for the reports.
    Conversion(Conversion),
}

impl JourneyOutput {
    /// When it happened.
    pub fn time(&self) -> Time {
        match self {
            JourneyOutput::Transition(t) => t.time,
            JourneyOutput::Action(a) => a.time,
            JourneyOutput::Conversion(c) => c.time,
        }
    }

    /// Whose it is.
    pub fn user(&self) -> Key {
        match self {
            JourneyOutput::Transition(t) => t.user,
            JourneyOutput::Action(a) => a.user,
            JourneyOutput::Conversion(c) => c.user,
        }
    }
}

/// A journey's lifecycle status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Defined, not running: no entries.
    Draft,
    /// Running.
    Ongoing,
    /// No entries, no movement; timers that come due wait for the resume.
    Paused,
    /// Finished: users still inside were canceled.
    Ended,
}

/// A lifecycle command, applied at its time before anything else at that time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Draft to ongoing.
    Publish,
    /// Ongoing to paused.
    Pause,
    /// Paused to ongoing.
    Resume,
    /// Any status to ended.
    End,
    /// Hand every user over to the next version at the end of this time, and stop.
    Retire,
    /// Leave a [`super::Snapshot`] of every user's state once this time is done (a checkpoint's).
    Snapshot,
}

impl Status {
    /// The status after a command; commands that do not apply leave it unchanged.
    pub fn after(self, command: Command) -> Status {
        match (self, command) {
            (Status::Ended, _) => Status::Ended,
            (_, Command::End) => Status::Ended,
            (Status::Draft, Command::Publish) => Status::Ongoing,
            (Status::Ongoing, Command::Pause) => Status::Paused,
            (Status::Paused, Command::Resume) => Status::Ongoing,
            (s, _) => s,
        }
    }
}
