//! One user's journey state and the rules that move it, free of dataflow concerns: the
//! operator decides *when* (complete times, canonical order) and calls these to decide *what*.
//!
//! At one time, for one user, in this order: the user's condition changes (the exit rule,
//! then a segment entry), then a scheduled entry's occurrence, then entries from outside (in
//! the order they were sequenced), then their due timer, then their events by `messageId`. An event
//! does at most one thing: convert (goal), else move a `wait_until`, else enter.

use super::plan::{JourneyPlan, PlanEntry, PlanNode};
use super::record::{ActionRecord, ActionStatus, Conversion, JourneyOutput, Reason, Rendered, Transition};
use crate::{SharedEvent, Time};
use journeyflow_types::journey::{split_point, ReEntryMode};
use journeyflow_types::template::{self, RenderError};
use journeyflow_types::{Key, Value};
use serde_json::Value as Json;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// The largest conversion value counted: a larger one (or one not finite) counts as none, so
/// that sums of millionths stay far from overflowing.
pub const MAX_VALUE: f64 = 1e9;

/// A value in millionths, rounded; 0 for a value beyond [`MAX_VALUE`] either way.
pub fn micros(v: f64) -> i64 {
    match v.is_finite() && v.abs() <= MAX_VALUE {
        true => (v * 1e6).round() as i64,
        false => 0,
    }
}

/// The largest event kept for templates (encoded): a larger one reads as no event.
pub const MAX_KEPT_EVENT_BYTES: usize = 64 << 10;

/// Where a user is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Node index.
    pub node: u32,
    /// When the user got there.
    pub since: Time,
    /// When the user's timer fires (waits, timeouts, quiet-hours release).
    pub timer: Option<Time>,
}

/// One user's state in one journey.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct UserState {
    /// Membership in the plan's conditions, one bit per index.
    pub member: u64,
    /// Where the user is, when inside.
    pub at: Option<Position>,
    /// Entries so far.
    pub entries: u64,
    /// Time of the latest entry.
    pub last_entry: Option<Time>,
    /// Times of sent actions still inside the frequency-cap window.
    pub sent: VecDeque<Time>,
    /// The traits the plan reads (dot path to value), as of now: like `member`, kept up by
    /// their changes and never part of a snapshot.
    #[serde(skip)]
    pub traits: BTreeMap<String, Value>,
    /// The event behind the entry, or the last awaited event, when templates read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<SharedEvent>,
    /// An API entry's context (JSON text), when templates read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Arc<str>>,
    /// The split branches `(node, branch)` taken since entering (one per split node: a user
    /// always falls in the same branch of one), for the reports' A/B results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<(u32, u32)>,
}

impl UserState {
    /// Whether the state holds nothing worth keeping.
    pub fn is_empty(&self) -> bool {
        self.member == 0 && self.traits.is_empty() && self.at.is_none() && self.entries == 0 && self.sent.is_empty()
    }

    /// Takes `state` (restored, or forgotten) but for what the inputs keep up: condition
    /// memberships and traits.
    pub fn replace(&mut self, state: UserState) {
        let (member, traits) = (self.member, std::mem::take(&mut self.traits));
        *self = UserState { member, traits, ..state };
    }

    /// Applies a change of a trait's value.
    pub fn apply_trait(&mut self, key: &str, value: &Value, diff: isize) {
        if diff > 0 {
            self.traits.insert(key.to_string(), value.clone());
        } else if diff < 0 && self.traits.get(key) == Some(value) {
            self.traits.remove(key);
        }
    }

    /// Applies a change of membership in condition `index`.
    pub fn apply(&mut self, index: u32, diff: isize) {
        if diff > 0 {
            self.member |= 1 << index;
        } else if diff < 0 {
            self.member &= !(1 << index);
        }
    }

    fn holds(&self, index: u32) -> bool {
        self.member & (1 << index) != 0
    }

    /// The pending timer.
    pub fn timer(&self) -> Option<Time> {
        self.at.and_then(|p| p.timer)
    }
}

/// Moves one user at one time, appending what happens to `out`.
pub struct Step<'a> {
    /// The journey.
    pub plan: &'a JourneyPlan,
    /// Its index in the engine.
    pub journey: u32,
    /// The user.
    pub user: Key,
    /// The time.
    pub time: Time,
    /// Records produced.
    pub out: &'a mut Vec<JourneyOutput>,
}

impl Step<'_> {
    fn transition(&mut self, from: Option<u32>, to: Option<u32>, reason: Reason) {
        self.out.push(JourneyOutput::Transition(Transition {
            journey: self.journey,
            version: self.plan.version,
            user: self.user,
            from,
            to,
            time: self.time,
            reason,
        }));
    }

    /// Takes the user out of the journey, if inside.
    pub fn leave(&mut self, s: &mut UserState, reason: Reason) {
        (s.cause, s.context) = (None, None);
        s.splits.clear();
        if let Some(p) = s.at.take() {
            self.transition(Some(p.node), None, reason);
        }
    }

    /// Whether the exit rule holds for the user now.
    pub fn exit_rule_holds(&self, s: &UserState) -> bool {
        self.plan.exit_when.is_some_and(|i| s.holds(i))
    }

    /// Applies condition changes already folded into `s` (`before` is the membership before):
    /// the exit rule first, then a segment entry.
    pub fn conditions_changed(&mut self, s: &mut UserState, before: u64) {
        if s.at.is_some() && self.exit_rule_holds(s) {
            self.leave(s, Reason::ExitWhen);
        }
        if let PlanEntry::Segment { condition, on_enter } = self.plan.entry {
            let was = before & (1 << condition) != 0;
            if was != s.holds(condition) && s.holds(condition) == on_enter {
                self.try_enter(s, Reason::Entry, None, None);
            }
        }
    }

    /// Enters the user (for `reason`: an entry, a scheduled or an API one; `cause`: the event
    /// that brought them, if one did; `context`: an API entry's) if the schedule, the exit
    /// rule and the re-entry rules allow it.
    pub fn try_enter(
        &mut self,
        s: &mut UserState,
        reason: Reason,
        cause: Option<&SharedEvent>,
        context: Option<&Arc<str>>,
    ) {
        let schedule = self.plan.schedule();
        if schedule.start_at.is_some_and(|t| self.time < t) || schedule.end_at.is_some_and(|t| self.time >= t) {
            return;
        }
        if self.exit_rule_holds(s) {
            return;
        }
        let rules = self.plan.re_entry();
        let allowed = match rules.mode {
            ReEntryMode::Once => s.entries == 0,
            ReEntryMode::AfterExit | ReEntryMode::Always => {
                (rules.mode == ReEntryMode::Always || s.at.is_none())
                    && rules.max_times.is_none_or(|m| s.entries < m)
                    && s.last_entry.is_none_or(|last| rules.cooldown.is_none_or(|c| self.time - last >= c.0))
            }
        };
        if !allowed {
            return;
        }
        s.entries += 1;
        s.last_entry = Some(self.time);
        s.splits.clear();
        s.cause = cause.filter(|e| self.keeps(e)).cloned();
        s.context = context.filter(|_| self.plan.keeps_context).cloned();
        let from = s.at.take().map(|p| p.node);
        self.arrive(s, from, self.plan.start, reason);
    }

    /// A scheduled entry's occurrence now: a member of its segment tries to enter.
    pub fn occurrence(&mut self, s: &mut UserState) {
        if let PlanEntry::Scheduled { condition, .. } = self.plan.entry {
            if s.holds(condition) {
                self.try_enter(s, Reason::Scheduled, None, None);
            }
        }
    }

    /// Records a conversion of the user at `node` by goal event `e`.
    fn convert(&mut self, s: &UserState, node: u32, e: &SharedEvent) {
        let value =
            self.plan.definition.goal_value.as_deref().and_then(|p| e.prop(p)).and_then(|v| v.to_value().as_f64());
        self.out.push(JourneyOutput::Conversion(Conversion {
            journey: self.journey,
            version: self.plan.version,
            user: self.user,
            node,
            time: self.time,
            value: value.map_or(0, micros),
            splits: s.splits.as_slice().into(),
        }));
    }

    /// Whether the event behind an entry (or an awaited one) is kept for templates: when they
    /// read it, and it is at most [`MAX_KEPT_EVENT_BYTES`].
    fn keeps(&self, e: &SharedEvent) -> bool {
        self.plan.keeps_event && e.encoded_len() <= MAX_KEPT_EVENT_BYTES
    }

    /// An entry from outside now, with its context.
    pub fn api_entry(&mut self, s: &mut UserState, context: Option<&Arc<str>>) {
        self.try_enter(s, Reason::Api, None, context);
    }

    /// Places a user taken over from a previous version (where they were at node `from` of
    /// that version) at `at` of this one, keeping when they got there and their timer.
    pub fn stay(&mut self, s: &mut UserState, from: u32, at: Position, reason: Reason) {
        self.transition(Some(from), Some(at.node), reason);
        s.at = Some(at);
    }

    /// Moves the user to `node` and through every pass-through node after it, stopping at a
    /// wait, a held action, or an exit.
    pub fn arrive(&mut self, s: &mut UserState, mut from: Option<u32>, mut node: u32, mut reason: Reason) {
        loop {
            self.transition(from, Some(node), reason);
            let now = self.time;
            let stay = |timer| Some(Position { node, since: now, timer: Some(timer) });
            let next = match &self.plan.nodes[node as usize] {
                PlanNode::Wait { duration, .. } => {
                    s.at = stay(self.time.saturating_add(*duration));
                    return;
                }
                PlanNode::WaitUntil { timeout, .. } => {
                    s.at = stay(self.time.saturating_add(*timeout));
                    return;
                }
                PlanNode::WaitUntilTime { until, next, if_missing } => {
                    let value = until.trait_read().and_then(|k| s.traits.get(k));
                    match (until.due(self.time, value), if_missing) {
                        (Some(due), _) if due > self.time => {
                            s.at = stay(due);
                            return;
                        }
                        (Some(_), _) | (None, None) => (*next, Reason::Next),
                        (None, Some(missing)) => (*missing, Reason::Missing),
                    }
                }
                PlanNode::Exit => {
                    (s.at, s.cause, s.context) = (None, None, None);
                    s.splits.clear();
                    return;
                }
                PlanNode::Branch { cases, otherwise } => {
                    match cases.iter().enumerate().find(|(_, (c, _))| s.holds(*c)) {
                        Some((i, (_, next))) => (*next, Reason::Case(i as u32)),
                        None => (*otherwise, Reason::Else),
                    }
                }
                PlanNode::Split { bounds } => {
                    let point = split_point(self.plan.id(), &self.plan.node_ids[node as usize], self.user);
                    let i = bounds.iter().position(|(upper, _)| point < *upper).unwrap_or(bounds.len() - 1);
                    if !s.splits.iter().any(|(n, _)| *n == node) {
                        s.splits.push((node, i as u32));
                    }
                    (bounds[i].1, Reason::Split(i as u32))
                }
                PlanNode::Action { next, .. } => {
                    if let Some(release) = self.plan.quiet_hours().and_then(|q| q.release(self.time)) {
                        self.action(node, self.time, ActionStatus::HeldQuietHours, None);
                        s.at = stay(release);
                        return;
                    }
                    self.send(s, node, self.time);
                    (*next, Reason::Next)
                }
            };
            (from, node, reason) = (Some(node), next.0, next.1);
        }
    }

    fn action(&mut self, node: u32, reached: Time, status: ActionStatus, rendered: Option<Rendered>) {
        self.out.push(JourneyOutput::Action(ActionRecord {
            journey: self.journey,
            version: self.plan.version,
            user: self.user,
            node,
            reached,
            time: self.time,
            status,
            rendered,
        }));
    }

    /// What templates see now: the user's traits, the event behind the entry or the last
    /// awaited event, the journey and the node.
    fn context(&self, s: &UserState, node: u32) -> Json {
        let mut cx = serde_json::Map::new();
        let traits = s.traits.iter().map(|(k, v)| (k.as_str(), template::json_of(v)));
        cx.insert("traits".into(), template::unflatten(traits));
        if let Some(e) = &s.cause {
            cx.insert("event".into(), template::event_json(e));
        }
        if let Some(c) = s.context.as_deref().and_then(|c| serde_json::from_str(c).ok()) {
            cx.insert("context".into(), c);
        }
        cx.insert("journey".into(), serde_json::json!({"id": self.plan.id(), "version": self.plan.version}));
        cx.insert("node".into(), Json::String(self.plan.node_ids[node as usize].clone()));
        Json::Object(cx)
    }

    /// The status and rendered payload of an action of `node` that may be sent now.
    fn render(&self, s: &UserState, node: u32) -> (ActionStatus, Option<Rendered>) {
        let PlanNode::Action { templates: Some(payload), .. } = &self.plan.nodes[node as usize] else {
            return (ActionStatus::Sent, None);
        };
        match template::render(payload, &self.context(s, node)) {
            Ok(json) => (ActionStatus::Sent, Some(Rendered::Payload(json.to_string().into()))),
            Err(RenderError::Missing(path)) => (ActionStatus::FailedMissingData, Some(Rendered::Error(path.into()))),
            Err(RenderError::Failed(why)) => (ActionStatus::FailedRender, Some(Rendered::Error(why.into()))),
        }
    }

    /// Sends the action of `node` (reached at `reached`) now, unless the frequency cap forbids
    /// it or its payload cannot be rendered (an action not sent does not count to the cap).
    fn send(&mut self, s: &mut UserState, node: u32, reached: Time) {
        let cap = self.plan.frequency_cap();
        if let Some(cap) = cap {
            while s.sent.front().is_some_and(|t| t.saturating_add(cap.per.0) <= self.time) {
                s.sent.pop_front();
            }
            if s.sent.len() as u64 >= cap.max_actions {
                return self.action(node, reached, ActionStatus::SuppressedByCap, None);
            }
        }
        let (status, rendered) = self.render(s, node);
        if status == ActionStatus::Sent && cap.is_some() {
            s.sent.push_back(self.time);
        }
        self.action(node, reached, status, rendered);
    }

    /// Fires the user's timer (due at or before now).
    pub fn fire(&mut self, s: &mut UserState) {
        let Some(p) = s.at else { return };
        match &self.plan.nodes[p.node as usize] {
            PlanNode::Wait { next, .. } | PlanNode::WaitUntilTime { next, .. } => {
                self.arrive(s, Some(p.node), *next, Reason::Next)
            }
            PlanNode::WaitUntil { on_timeout, .. } => self.arrive(s, Some(p.node), *on_timeout, Reason::Timeout),
            PlanNode::Action { next, .. } => {
                self.send(s, p.node, p.since);
                self.arrive(s, Some(p.node), *next, Reason::Next);
            }
            PlanNode::Branch { .. } | PlanNode::Split { .. } | PlanNode::Exit => {}
        }
    }

    /// One event: goal, else an awaited event, else an entry.
    pub fn event(&mut self, s: &mut UserState, e: &SharedEvent) {
        if let Some(p) = s.at {
            if self.plan.goal().is_some_and(|g| g.matches(e)) {
                self.convert(s, p.node, e);
                self.leave(s, Reason::Goal);
                return;
            }
            if let PlanNode::WaitUntil { event, on_event, .. } = &self.plan.nodes[p.node as usize] {
                if event.matches(e) {
                    s.cause = Some(e.clone()).filter(|e| self.keeps(e));
                    self.arrive(s, Some(p.node), *on_event, Reason::Event);
                    return;
                }
            }
        }
        if matches!(&self.plan.entry, PlanEntry::Event(f) if f.matches(e)) {
            self.try_enter(s, Reason::Entry, Some(e), None);
        }
    }
}
