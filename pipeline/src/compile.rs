//! Turns validated segment definitions into differential dataflow: one membership
//! collection per segment over the shared (deduplicated) event collection. Shared
//! pieces, the universe of users and their latest traits, are built once per dataflow.

use differential_dataflow::VecCollection;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::latest::latest;
use journeyflow_operators::sequence::{sequence, SequenceEvent, SequenceSpec};
use journeyflow_operators::{aggregate, complement, intersect, union, window_count, SharedEvent, Time, UserId, Users};
use journeyflow_types::{Condition, Kind, SegmentDefinition, Value, ValueRef};
use std::collections::HashMap;
use timely::dataflow::operators::vec::Map;

/// The latest traits of every user: `((user, trait name), value)`.
pub type Traits<'s> = VecCollection<'s, Time, ((UserId, String), Value)>;

/// Builds membership collections for definitions over one event collection.
pub struct Compiler<'s> {
    events: VecCollection<'s, Time, SharedEvent>,
    universe: Option<Users<'s>>,
    traits: Option<Traits<'s>>,
    segments: HashMap<String, Users<'s>>,
}

impl<'s> Compiler<'s> {
    /// A compiler over deduplicated events.
    pub fn new(events: VecCollection<'s, Time, SharedEvent>) -> Self {
        Compiler { events, universe: None, traits: None, segments: HashMap::new() }
    }

    /// A compiler over events imported into a program's dataflow, with the shared universe,
    /// traits, and the memberships of the segments it may refer to.
    pub fn over(
        events: VecCollection<'s, Time, SharedEvent>,
        universe: Users<'s>,
        traits: Traits<'s>,
        segments: HashMap<String, Users<'s>>,
    ) -> Self {
        Compiler { events, universe: Some(universe), traits: Some(traits), segments }
    }

    /// Compiles definitions given in dependency order; returns one collection per definition, in order.
    pub fn segments(&mut self, defs: &[SegmentDefinition]) -> Vec<Users<'s>> {
        defs.iter()
            .map(|def| {
                let members = self.condition(&def.condition);
                self.segments.insert(def.id.clone(), members.clone());
                members
            })
            .collect()
    }

    /// The events this compiler reads.
    pub fn events(&self) -> VecCollection<'s, Time, SharedEvent> {
        self.events.clone()
    }

    /// Every user with at least one event at or before the current time.
    pub fn universe(&mut self) -> Users<'s> {
        if self.universe.is_none() {
            let firsts = self.events.inner.clone().map(|(e, t, r)| ((e.user(), (), Some(())), t, r));
            self.universe = Some(latest(firsts).map(|(user, ())| user));
        }
        self.universe.clone().expect("just built")
    }

    /// Each user's current merged traits: per key, the value of the latest identify carrying
    /// it (by `(timestamp, messageId)`); a `null` removes the key.
    pub fn traits(&mut self) -> Traits<'s> {
        if self.traits.is_none() {
            let upserts = self.events.inner.clone().flat_map(|(e, t, r)| {
                let updates: Vec<(String, Value)> = if e.kind() == Kind::Identify {
                    e.props().map(|(key, value)| (key.to_string(), value.to_value())).collect()
                } else {
                    Vec::new()
                };
                let (user, order) = (e.user(), (e.ts(), e.message_id().to_string()));
                updates.into_iter().map(move |(key, value)| {
                    let value = (value != Value::Null).then_some(value);
                    (((user, key), order.clone(), value), t, r)
                })
            });
            self.traits = Some(latest(upserts));
        }
        self.traits.clone().expect("just built")
    }

    /// An empty set of users in this dataflow.
    fn empty(&self) -> Users<'s> {
        self.events.clone().filter(|_| false).map(|e| e.user())
    }

    /// The membership changes of a journey's conditions, tagged with their index and consolidated.
    pub fn journey_conditions(&mut self, plan: &JourneyPlan) -> VecCollection<'s, Time, (u32, UserId)> {
        let tagged: Vec<_> =
            plan.conditions.iter().enumerate().map(|(i, c)| self.condition(c).map(move |u| (i as u32, u))).collect();
        let none = self.empty().map(|u| (0u32, u));
        none.concatenate(tagged).consolidate()
    }

    /// Tags each segment's membership with its index and merges them, consolidated, so each
    /// output update is a real enter (+1) or exit (-1) at a complete time.
    pub fn changes(&self, segments: Vec<Users<'s>>) -> VecCollection<'s, Time, (u32, UserId)> {
        let tagged: Vec<_> =
            segments.into_iter().enumerate().map(|(i, members)| members.map(move |u| (i as u32, u))).collect();
        let none = self.empty().map(|u| (0u32, u));
        none.concatenate(tagged).consolidate()
    }

    /// The users for whom a condition holds (references to segments compiled before).
    pub fn condition(&mut self, condition: &Condition) -> Users<'s> {
        match condition {
            Condition::All(cs) => {
                let sets = cs.iter().map(|c| self.condition(c)).collect();
                intersect::intersect(sets)
            }
            Condition::Any(cs) => {
                let sets = cs.iter().map(|c| self.condition(c)).collect();
                union::union(sets)
            }
            Condition::Not(c) => {
                let inner = self.condition(c);
                complement::complement(self.universe(), inner)
            }
            // Validation guarantees references resolve and come first.
            Condition::InSegment(id) => self.segments.get(id).cloned().unwrap_or_else(|| self.empty()),
            Condition::Trait(p) => {
                let p = p.clone();
                if p.op == journeyflow_types::Op::NotExists {
                    let name = p.path.clone();
                    let having = self.traits().filter(move |((_, k), _)| *k == name).map(|((u, _), _)| u);
                    complement::complement(self.universe(), having)
                } else {
                    self.traits().filter(move |((_, k), v)| *k == p.path && p.test(Some(v))).map(|((u, _), _)| u)
                }
            }
            Condition::Performed(p) => {
                let filter = p.filter.clone();
                let matches = self.events.clone().flat_map(move |e| filter.matches(&e).then(|| (e.user(), e.ts())));
                let window = p.within.map(|w| w.0);
                match (p.at_least, p.at_most) {
                    (0, None) => self.universe(),
                    // At most m: not at least m + 1.
                    (0, Some(m)) => {
                        let over = window_count::window_count(matches, window, m + 1, None);
                        complement::complement(self.universe(), over)
                    }
                    (least, most) => window_count::window_count(matches, window, least, most),
                }
            }
            Condition::Aggregate(a) => {
                let (filter, property) = (a.filter.clone(), a.property.clone());
                let values = self.events.clone().flat_map(move |e| {
                    if !filter.matches(&e) {
                        return None;
                    }
                    let value = e.prop(&property).filter(|v| *v != ValueRef::Null)?.to_value();
                    Some(((e.user(), value), e.ts()))
                });
                aggregate::aggregate(values, a.within.map(|w| w.0), a.func, a.op, a.value)
            }
            Condition::Sequence(s) => {
                let (steps, then_not) = (s.steps.clone(), s.then_not.clone());
                let events = self.events.clone().flat_map(move |e| {
                    let mask =
                        steps.iter().enumerate().filter(|(_, f)| f.matches(&e)).fold(0u64, |m, (i, _)| m | 1 << i);
                    let then_not = then_not.as_ref().is_some_and(|f| f.matches(&e));
                    (mask != 0 || then_not).then(|| {
                        let message_id = e.message_id().to_string();
                        (e.user(), SequenceEvent { ts: e.ts(), message_id, steps: mask, then_not })
                    })
                });
                let spec = SequenceSpec { steps: s.steps.len(), within: s.within.0, min_age: s.min_age.0 };
                sequence(events, spec)
            }
        }
    }
}
