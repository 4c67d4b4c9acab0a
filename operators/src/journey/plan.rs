//! A journey definition compiled for the operator: nodes and conditions by index, split
//! shares as cumulative bounds. The conditions listed here are compiled to membership
//! collections by the pipeline and arrive at the operator as `(index, user)` changes.

use journeyflow_types::journey::{
    Action, Entry, FrequencyCap, JourneyDefinition, Node, Occurrences, QuietHours, ReEntry, Schedule, Until,
};
use journeyflow_types::template::{self, TraitUse};
use journeyflow_types::{Condition, EventFilter, EventView};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What brings a user in, by condition index for segment entries.
#[derive(Clone, Debug)]
pub enum PlanEntry {
    /// A matching event.
    Event(EventFilter),
    /// A change of membership in condition `condition`: entering it when `on_enter`, else leaving it.
    Segment {
        /// The condition index.
        condition: u32,
        /// Enter (true) or exit (false) triggers.
        on_enter: bool,
    },
    /// At each occurrence, every member of condition `condition` then.
    Scheduled {
        /// The condition index.
        condition: u32,
        /// When.
        occurrences: Occurrences,
    },
}

/// One node, with targets by node index.
#[derive(Clone, Debug)]
pub enum PlanNode {
    /// Stay `duration` ms.
    Wait {
        /// Milliseconds.
        duration: u64,
        /// Node index.
        next: u32,
    },
    /// Wait for an event for at most `timeout` ms.
    WaitUntil {
        /// The awaited event.
        event: EventFilter,
        /// Milliseconds.
        timeout: u64,
        /// Node index.
        on_event: u32,
        /// Node index.
        on_timeout: u32,
    },
    /// Stay until a time (a local time of day, or a trait's time), then go on.
    WaitUntilTime {
        /// Until when.
        until: Until,
        /// Node index.
        next: u32,
        /// Node index, where users go when the trait holds no time.
        if_missing: Option<u32>,
    },
    /// `(condition index, next node)` per case.
    Branch {
        /// Cases in order.
        cases: Vec<(u32, u32)>,
        /// Node index.
        otherwise: u32,
    },
    /// `(cumulative upper bound in basis points, next node)` per share.
    Split {
        /// Shares in order.
        bounds: Vec<(u32, u32)>,
    },
    /// Send, then go on.
    Action {
        /// Node index.
        next: u32,
        /// The payload, when it holds templates (rendered when sent).
        templates: Option<Arc<serde_json::Value>>,
    },
    /// Done.
    Exit,
}

/// A compiled journey.
#[derive(Clone, Debug)]
pub struct JourneyPlan {
    /// The definition it was compiled from.
    pub definition: JourneyDefinition,
    /// The version transitions and actions record.
    pub version: u32,
    /// Entry trigger.
    pub entry: PlanEntry,
    /// Start node index.
    pub start: u32,
    /// Node ids by index (sorted).
    pub node_ids: Vec<String>,
    /// Nodes by index.
    pub nodes: Vec<PlanNode>,
    /// Conditions by index: entry segment, branch cases, exit rule.
    pub conditions: Vec<Condition>,
    /// Index of the exit rule's condition.
    pub exit_when: Option<u32>,
    /// The traits the plan reads (templates, waits), whose changes the operator is given.
    pub traits: Option<TraitUse>,
    /// Whether templates read the event behind an entry or an awaited event (kept per user).
    pub keeps_event: bool,
    /// Whether templates read an API entry's context (kept per user).
    pub keeps_context: bool,
}

impl JourneyPlan {
    /// Compiles a validated definition.
    pub fn new(definition: JourneyDefinition, version: u32) -> JourneyPlan {
        let index: BTreeMap<&str, u32> =
            definition.nodes.keys().enumerate().map(|(i, id)| (id.as_str(), i as u32)).collect();
        let at = |id: &str| index[id];
        let mut conditions = Vec::new();
        let mut add = |c: Condition| {
            conditions.push(c);
            conditions.len() as u32 - 1
        };
        let entry = match &definition.entry {
            Entry::Event(f) => PlanEntry::Event(f.clone()),
            Entry::SegmentEnter(s) => {
                PlanEntry::Segment { condition: add(Condition::InSegment(s.clone())), on_enter: true }
            }
            Entry::SegmentExit(s) => {
                PlanEntry::Segment { condition: add(Condition::InSegment(s.clone())), on_enter: false }
            }
            Entry::Scheduled { segment, occurrences } => PlanEntry::Scheduled {
                condition: add(Condition::InSegment(segment.clone())),
                occurrences: occurrences.clone(),
            },
        };
        let nodes = definition
            .nodes
            .values()
            .map(|node| match node {
                Node::Wait { duration, next } => PlanNode::Wait { duration: duration.0, next: at(next) },
                Node::WaitUntilTime { until, next, if_missing } => PlanNode::WaitUntilTime {
                    until: until.clone(),
                    next: at(next),
                    if_missing: if_missing.as_deref().map(at),
                },
                Node::WaitUntil { event, timeout, on_event, on_timeout } => PlanNode::WaitUntil {
                    event: event.clone(),
                    timeout: timeout.0,
                    on_event: at(on_event),
                    on_timeout: at(on_timeout),
                },
                Node::Branch { cases, otherwise } => PlanNode::Branch {
                    cases: cases.iter().map(|c| (add(c.when.clone()), at(&c.next))).collect(),
                    otherwise: at(otherwise),
                },
                Node::Split { branches } => {
                    let mut upper = 0;
                    let bounds = branches
                        .iter()
                        .map(|b| {
                            upper += b.basis_points;
                            (upper, at(&b.next))
                        })
                        .collect();
                    PlanNode::Split { bounds }
                }
                Node::Action { next, action } => PlanNode::Action {
                    next: at(next),
                    templates: action.payload.as_ref().filter(|p| template::has_templates(p)).cloned().map(Arc::new),
                },
                Node::Exit => PlanNode::Exit,
            })
            .collect();
        let exit_when = definition.exit_when.clone().map(&mut add);
        let (mut traits, mut keeps_event, mut keeps_context) = (None, false, false);
        for node in definition.nodes.values() {
            match node {
                Node::Action { action: Action { payload: Some(p), .. }, .. } => {
                    let uses = template::uses(p);
                    traits = TraitUse::union(traits, uses.traits);
                    keeps_event |= uses.event;
                    keeps_context |= uses.context;
                }
                Node::WaitUntilTime { until, .. } => {
                    let read = until.trait_read().map(|t| TraitUse::Paths([t.to_string()].into()));
                    traits = TraitUse::union(traits, read);
                }
                _ => {}
            }
        }
        JourneyPlan {
            traits,
            keeps_event,
            keeps_context,
            version,
            entry,
            start: at(&definition.start),
            node_ids: definition.nodes.keys().cloned().collect(),
            nodes,
            conditions,
            exit_when,
            definition,
        }
    }

    /// The index of node `id` (which must be one of the plan's).
    pub fn node_index(&self, id: &str) -> u32 {
        self.node_ids.binary_search_by(|n| n.as_str().cmp(id)).expect("a node of the plan") as u32
    }

    /// The channel of action node `node` (none for other nodes).
    pub fn channel(&self, node: u32) -> Option<&str> {
        match self.definition.nodes.get(self.node_ids.get(node as usize)?)? {
            Node::Action { action, .. } => Some(&action.channel),
            _ => None,
        }
    }

    /// The journey id.
    pub fn id(&self) -> &str {
        &self.definition.id
    }

    /// Whether an event can matter to this journey (entry, goal or an awaited event).
    pub fn relevant(&self, e: &impl EventView) -> bool {
        matches!(&self.entry, PlanEntry::Event(f) if f.matches(e))
            || self.goal().is_some_and(|g| g.matches(e))
            || self.nodes.iter().any(|n| matches!(n, PlanNode::WaitUntil { event, .. } if event.matches(e)))
    }

    /// The names of the events `relevant` can accept.
    pub fn event_names(&self) -> Vec<&str> {
        let entry = match &self.entry {
            PlanEntry::Event(f) => Some(f),
            _ => None,
        };
        let waits = self.nodes.iter().filter_map(|n| match n {
            PlanNode::WaitUntil { event, .. } => Some(event),
            _ => None,
        });
        entry.into_iter().chain(self.goal()).chain(waits).map(|f| f.event.as_str()).collect()
    }

    /// The goal filter.
    pub fn goal(&self) -> Option<&EventFilter> {
        self.definition.goal.as_ref()
    }

    /// Re-entry rules.
    pub fn re_entry(&self) -> ReEntry {
        self.definition.re_entry
    }

    /// The schedule.
    pub fn schedule(&self) -> Schedule {
        self.definition.schedule
    }

    /// Quiet hours.
    pub fn quiet_hours(&self) -> Option<QuietHours> {
        self.definition.quiet_hours
    }

    /// The frequency cap.
    pub fn frequency_cap(&self) -> Option<FrequencyCap> {
        self.definition.frequency_cap
    }

    /// Whether node `node` is an exit.
    pub fn is_exit(&self, node: u32) -> bool {
        matches!(self.nodes[node as usize], PlanNode::Exit)
    }
}
