//! Journey outputs as written by sinks: transitions, actions and per-journey reports with
//! ids, node names and user ids in place of the engine's indices and keys.

use journeyflow_control_api::handle::HourCount;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::journey::record::{ActionRecord, Reason, Rendered, Transition};
use journeyflow_operators::journey::stats::{Flow, Stat};
use journeyflow_operators::Time;
use journeyflow_types::journey::{action_id, Node};
use journeyflow_types::template::has_templates;
use journeyflow_types::Key;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Names shared by every output line of one journey (lines hold references, not copies).
#[derive(Clone, Debug)]
pub struct JourneyNames {
    journey: Arc<str>,
    nodes: Vec<Arc<str>>,
    /// Node names of the version this one replaced (`from` of `migrated` transitions).
    previous: Vec<Arc<str>>,
    /// Per node index, for action nodes: channel, template, payload.
    actions: Vec<Option<ActionNames>>,
}

type ActionNames = (Arc<str>, Option<Arc<str>>, Option<Arc<serde_json::Value>>);

impl JourneyNames {
    /// The names of a plan.
    pub fn new(plan: &JourneyPlan) -> JourneyNames {
        JourneyNames {
            journey: plan.id().into(),
            nodes: plan.node_ids.iter().map(|n| Arc::from(n.as_str())).collect(),
            previous: Vec::new(),
            actions: plan
                .definition
                .nodes
                .values()
                .map(|n| match n {
                    Node::Action { action, .. } => Some((
                        Arc::from(action.channel.as_str()),
                        action.template.as_deref().map(Arc::from),
                        action.payload.clone().map(Arc::new),
                    )),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The names of a plan that replaced `previous`.
    pub fn replacing(plan: &JourneyPlan, previous: &JourneyPlan) -> JourneyNames {
        let previous = previous.node_ids.iter().map(|n| Arc::from(n.as_str())).collect();
        JourneyNames { previous, ..JourneyNames::new(plan) }
    }
}

fn display<S: serde::Serializer>(r: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

/// One line of `journey_transitions.ndjson`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransitionLine {
    /// Journey id.
    pub journey: Arc<str>,
    /// Journey version.
    pub version: u32,
    /// User id.
    pub user_id: Arc<str>,
    /// Node left; `null` on entry from outside.
    pub from: Option<Arc<str>>,
    /// Node reached; `null` on leaving.
    pub to: Option<Arc<str>>,
    /// Event time, epoch ms.
    pub time: Time,
    /// Written as `entry`, `scheduled`, `next`, `event`, `timeout`, `case:<i>`, `else`, `split:<i>`, `goal`,
    /// `exit_when`, `ended` or `migrated` (placed by a new version: `from` is a node of the
    /// version before).
    #[serde(serialize_with = "display")]
    pub reason: Reason,
}

impl TransitionLine {
    /// Names a transition with its journey's names and the user's id.
    pub fn new(t: &Transition, names: &JourneyNames, user_id: Arc<str>) -> TransitionLine {
        let node = |n: Option<u32>| n.map(|n| names.nodes[n as usize].clone());
        let from = match t.reason {
            Reason::Migrated(_) => t.from.map(|n| names.previous[n as usize].clone()),
            _ => node(t.from),
        };
        TransitionLine {
            journey: names.journey.clone(),
            version: t.version,
            user_id,
            from,
            to: node(t.to),
            time: t.time,
            reason: t.reason,
        }
    }
}

/// One line of `journey_actions.ndjson`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActionLine {
    /// Deterministic id, shared by a held action and its later sending.
    pub action_id: String,
    /// Journey id.
    pub journey: Arc<str>,
    /// Journey version.
    pub version: u32,
    /// Action node id.
    pub node: Arc<str>,
    /// User id.
    pub user_id: Arc<str>,
    /// Channel.
    pub channel: Arc<str>,
    /// Template.
    pub template: Option<Arc<str>>,
    /// Payload: with templates, rendered when sent and `null` otherwise.
    pub payload: Option<Arc<serde_json::Value>>,
    /// Event time of this record.
    pub time: Time,
    /// `sent`, `suppressed_by_cap`, `held_quiet_hours`, `failed_missing_data` or
    /// `failed_render`.
    pub status: &'static str,
    /// Why it failed: the path of the missing value, or the template engine's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Arc<str>>,
}

impl ActionLine {
    /// Names an action with its journey's names and the user's key and id.
    pub fn new(a: &ActionRecord, names: &JourneyNames, user: Key, user_id: Arc<str>) -> ActionLine {
        let node = &names.nodes[a.node as usize];
        let (channel, template, payload) =
            names.actions[a.node as usize].clone().expect("action records come from action nodes");
        let (payload, error) = match &a.rendered {
            None if payload.as_deref().is_some_and(has_templates) => (None, None),
            None => (payload, None),
            Some(Rendered::Payload(text)) => (serde_json::from_str(text).ok().map(Arc::new), None),
            Some(Rendered::Error(why)) => (None, Some(why.clone())),
        };
        ActionLine {
            action_id: action_id(&names.journey, a.version, user, node, a.reached),
            journey: names.journey.clone(),
            version: a.version,
            node: node.clone(),
            user_id,
            channel,
            template,
            payload,
            time: a.time,
            status: a.status.name(),
            error,
        }
    }
}

/// Counts for one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    /// Node kind.
    pub kind: &'static str,
    /// Arrivals.
    pub entered: i64,
    /// Users there now (at an exit node: users who finished there).
    pub current: i64,
    /// Departures.
    pub exited: i64,
    /// Action records by status (action nodes only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<&'static str, i64>,
    /// Conversions of users who were here.
    #[serde(skip_serializing_if = "is_zero")]
    pub converted: i64,
    /// What they were worth (with a goal `value`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted_value: Option<Micros>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// An amount in millionths, written as a decimal number (exact sums, whatever the order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Micros(pub i64);

impl Serialize for Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 1e6)
    }
}

/// The 95% Wilson score interval of `successes` out of `trials` (none without trials).
pub fn wilson(successes: i64, trials: i64) -> Option<(f64, f64)> {
    if trials <= 0 {
        return None;
    }
    const Z: f64 = 1.959_963_984_540_054;
    let (n, p) = (trials as f64, successes as f64 / trials as f64);
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    // At 0 or all of them the bound is exactly 0 or 1 (rounding would leave it a hair off).
    let lo = if successes == 0 { 0.0 } else { (centre - half).max(0.0) };
    let hi = if successes >= trials { 1.0 } else { (centre + half).min(1.0) };
    Some((lo, hi))
}

/// One branch of a split, for A/B results: users who took it (each time they did), those of
/// them who converted in the same entry, the rate with its 95% Wilson interval, and the value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BranchReport {
    /// Its index.
    pub branch: u32,
    /// Where it leads.
    pub next: String,
    /// Took it.
    pub entered: i64,
    /// Converted after taking it.
    pub converted: i64,
    /// What those conversions were worth (with a goal `value`).
    pub converted_value: Option<Micros>,
}

impl Serialize for BranchReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("branch", &self.branch)?;
        m.serialize_entry("next", &self.next)?;
        m.serialize_entry("entered", &self.entered)?;
        m.serialize_entry("converted", &self.converted)?;
        let rate = (self.entered > 0).then(|| self.converted as f64 / self.entered as f64);
        m.serialize_entry("conversion_rate", &rate)?;
        m.serialize_entry("interval_95", &wilson(self.converted, self.entered).map(|(lo, hi)| [lo, hi]))?;
        if let Some(v) = self.converted_value {
            m.serialize_entry("converted_value", &v)?;
        }
        m.end()
    }
}

/// One journey's report, an element of `journey_stats.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JourneyReport {
    /// Journey id.
    pub journey: String,
    /// Version.
    pub version: u32,
    /// Entries (restarts included).
    pub entered: i64,
    /// Users inside, not at an exit node.
    pub in_progress: i64,
    /// Left by the goal.
    pub converted: i64,
    /// Left by the exit rule.
    pub exited: i64,
    /// Reached an exit node.
    pub completed: i64,
    /// Inside when the journey ended.
    pub canceled: i64,
    /// Taken over from the version before, at a node of this one.
    pub migrated_in: i64,
    /// Inside the version before and taken out of the journey by the migration.
    pub migrated_out: i64,
    /// Per node id.
    pub nodes: BTreeMap<String, NodeReport>,
    /// What conversions were worth (with a goal `value`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted_value: Option<Micros>,
    /// Per split node id, its branches side by side (A/B results).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub splits: BTreeMap<String, Vec<BranchReport>>,
}

/// Reports for every plan from summed counters `((journey, stat), value)`.
pub fn reports(plans: &[JourneyPlan], counters: &BTreeMap<(u32, Stat), isize>) -> Vec<JourneyReport> {
    plans
        .iter()
        .enumerate()
        .map(|(j, plan)| {
            let mut report = JourneyReport {
                journey: plan.id().to_string(),
                version: plan.version,
                nodes: plan
                    .definition
                    .nodes
                    .iter()
                    .map(|(id, node)| (id.clone(), NodeReport { kind: node.kind(), ..NodeReport::default() }))
                    .collect(),
                ..JourneyReport::default()
            };
            let valued = plan.definition.goal_value.is_some();
            if valued {
                report.converted_value = Some(Micros(0));
                for n in report.nodes.values_mut() {
                    n.converted_value = Some(Micros(0));
                }
            }
            for (id, node) in &plan.definition.nodes {
                if let Node::Split { branches } = node {
                    let branches = branches.iter().enumerate().map(|(i, b)| BranchReport {
                        branch: i as u32,
                        next: b.next.clone(),
                        converted_value: valued.then_some(Micros(0)),
                        ..BranchReport::default()
                    });
                    report.splits.insert(id.clone(), branches.collect());
                }
            }
            for ((_, stat), value) in
                counters.range((j as u32, Stat::Entered)..).take_while(|((k, _), _)| *k == j as u32)
            {
                let value = *value as i64;
                // A counter of a node this plan does not have (a snapshot file that is not
                // its own) is not shown.
                let name = |n: &u32| plan.node_ids.get(*n as usize);
                match stat {
                    Stat::Entered => report.entered = value,
                    Stat::InProgress => report.in_progress = value,
                    Stat::Converted => report.converted = value,
                    Stat::Exited => report.exited = value,
                    Stat::Completed => report.completed = value,
                    Stat::Canceled => report.canceled = value,
                    Stat::MigratedIn => report.migrated_in = value,
                    Stat::MigratedOut => report.migrated_out = value,
                    Stat::ConvertedValue => report.converted_value = Some(Micros(value)),
                    // Served by the hour (see [`hour_counts`]).
                    Stat::Hourly(..) => {}
                    Stat::NodeEntered(n)
                    | Stat::NodeExited(n)
                    | Stat::NodeActions(n, _)
                    | Stat::NodeConverted(n)
                    | Stat::NodeConvertedValue(n) => {
                        let Some(r) = name(n).and_then(|id| report.nodes.get_mut(id)) else { continue };
                        match stat {
                            Stat::NodeEntered(_) => r.entered = value,
                            Stat::NodeExited(_) => r.exited = value,
                            Stat::NodeActions(_, status) => {
                                r.actions.insert(status.name(), value);
                            }
                            Stat::NodeConverted(_) => r.converted = value,
                            _ => r.converted_value = Some(Micros(value)),
                        }
                    }
                    Stat::SplitEntered(n, b) | Stat::SplitConverted(n, b) | Stat::SplitValue(n, b) => {
                        let branch = name(n)
                            .and_then(|id| report.splits.get_mut(id))
                            .and_then(|branches| branches.get_mut(*b as usize));
                        let Some(branch) = branch else { continue };
                        match stat {
                            Stat::SplitEntered(..) => branch.entered = value,
                            Stat::SplitConverted(..) => branch.converted = value,
                            _ => branch.converted_value = Some(Micros(value)),
                        }
                    }
                }
            }
            for n in report.nodes.values_mut() {
                n.current = n.entered - n.exited;
            }
            report
        })
        .collect()
}

/// Per-hour counters of `plan` as the API serves them, named.
pub fn hour_counts(plan: &JourneyPlan, counters: impl IntoIterator<Item = (Time, Flow, isize)>) -> Vec<HourCount> {
    let node = |n: u32| plan.node_ids.get(n as usize).cloned();
    counters
        .into_iter()
        .map(|(hour, flow, value)| {
            let (node, field) = match flow {
                Flow::Entered => (None, "entered"),
                Flow::Converted => (None, "converted"),
                Flow::Exited => (None, "exited"),
                Flow::Completed => (None, "completed"),
                Flow::Canceled => (None, "canceled"),
                Flow::ConvertedValue => (None, "converted_value"),
                Flow::NodeEntered(n) => (node(n), "entered"),
                Flow::NodeExited(n) => (node(n), "exited"),
                Flow::NodeConverted(n) => (node(n), "converted"),
                Flow::NodeActions(n, status) => (node(n), status.name()),
            };
            HourCount { hour, node, field: field.to_string(), value: value as i64 }
        })
        .collect()
}

/// One line of `journey_members.ndjson`: where a user stands in a journey at the as-of time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgressLine {
    /// Journey id.
    pub journey: Arc<str>,
    /// Version of the latest transition.
    pub version: u32,
    /// User id.
    pub user_id: Arc<str>,
    /// `waiting` (on a wait, an awaited event), `running` (an action held by quiet hours),
    /// `ended` (reached an exit, converted or exited), `canceled` (the journey ended).
    pub status: &'static str,
    /// For users who have left: `completed`, `converted`, `exited`, `canceled` or
    /// `migrated_out` (taken out by the publication of a new version).
    pub outcome: Option<&'static str>,
    /// The current node, or the node the user left from.
    pub node: Option<Arc<str>>,
    /// When the user got there, or left.
    pub since: Time,
}

/// Each user's standing per journey, from transitions in time order (each user's in the order
/// they happened): the last transition decides it.
pub fn progress(plans: &[JourneyPlan], transitions: &[TransitionLine]) -> Vec<ProgressLine> {
    let kinds: BTreeMap<(&str, &str), &'static str> = plans
        .iter()
        .flat_map(|p| p.definition.nodes.iter().map(move |(id, n)| ((p.id(), id.as_str()), n.kind())))
        .collect();
    let mut last: BTreeMap<(&str, &str), &TransitionLine> = BTreeMap::new();
    for t in transitions {
        last.insert((&*t.journey, &*t.user_id), t);
    }
    last.into_values()
        .map(|t| {
            let (status, outcome, node) = match &t.to {
                Some(to) => match kinds.get(&(&*t.journey, &**to)).copied() {
                    Some("exit") => ("ended", Some("completed"), to),
                    Some("action") => ("running", None, to),
                    _ => ("waiting", None, to),
                },
                None => {
                    let from = t.from.as_ref().expect("a transition has a side");
                    match t.reason {
                        Reason::Goal => ("ended", Some("converted"), from),
                        Reason::ExitWhen => ("ended", Some("exited"), from),
                        Reason::Migrated(_) => ("ended", Some("migrated_out"), from),
                        _ => ("canceled", Some("canceled"), from),
                    }
                }
            };
            ProgressLine {
                journey: t.journey.clone(),
                version: t.version,
                user_id: t.user_id.clone(),
                status,
                outcome,
                node: Some(node.clone()),
                since: t.time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_match_published_values() {
        // 8 of 10: 0.4902 to 0.9433 (Wilson 1927, as tabulated by Newcombe 1998).
        let (lo, hi) = wilson(8, 10).unwrap();
        assert!((lo - 0.4902).abs() < 5e-5 && (hi - 0.9433).abs() < 5e-5, "{lo} {hi}");
        // 0 of 10 keeps its lower bound at 0; all of them, the upper at 1.
        let (lo, hi) = wilson(0, 10).unwrap();
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 5e-5, "{lo} {hi}");
        assert_eq!(wilson(10, 10).map(|(_, hi)| hi), Some(1.0));
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn a_branch_reports_its_rate_and_interval_and_money_is_written_as_a_decimal() {
        let b = BranchReport {
            branch: 1,
            next: "b".into(),
            entered: 10,
            converted: 8,
            converted_value: Some(Micros(12_340_000)),
        };
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["conversion_rate"], 0.8);
        assert_eq!(v["converted_value"], 12.34);
        assert_eq!(v["interval_95"].as_array().unwrap().len(), 2);
        let empty = serde_json::to_value(BranchReport::default()).unwrap();
        assert!(empty["conversion_rate"].is_null() && empty["interval_95"].is_null());
    }
}
