//! Size and depth limits of definitions: what one segment or journey may hold, so that nothing
//! a client sends can exhaust a stack, a recursion limit, a bit mask or the validator's time.
//! The defaults suit real definitions by a wide margin; a deployment may lower them (or raise
//! the soft ones) in `[limits]`. Hard ceilings come from the engine itself: a sequence's steps
//! and a journey's conditions are bits of a 64-bit mask.

use serde::Deserialize;

/// The most steps a sequence may have: each is a bit of a 64-bit mask.
pub const MAX_SEQUENCE_STEPS: usize = 64;
/// The most conditions (entry segment, branch cases, exit rule) one journey may use: each is a
/// bit of a 64-bit mask.
pub const MAX_JOURNEY_CONDITIONS: usize = 64;
/// The deepest condition nesting allowed by any setting: a definition travels to the workers
/// and to the control log inside a few more levels of JSON, and `serde_json` refuses more than
/// 128 levels.
pub const MAX_CONDITION_DEPTH: usize = 48;
/// The deepest an action's `payload` may nest.
pub const MAX_PAYLOAD_DEPTH: usize = 16;

/// Limits on definitions, checked by validation (each violation is an error at its JSON path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Condition nesting (`all`, `any`, `not` each add a level).
    pub condition_depth: usize,
    /// Children of one `all` or `any`, and predicates of one `where`.
    pub condition_width: usize,
    /// Values of one list operand (`in`, `not_in`, ...).
    pub list_values: usize,
    /// Steps of one sequence (at most 64).
    pub sequence_steps: usize,
    /// Nodes of one journey.
    pub journey_nodes: usize,
    /// Conditions of one journey (at most 64).
    pub journey_conditions: usize,
    /// Bytes of any one string in a definition (ids, names, event names, paths, values).
    pub string_bytes: usize,
    /// Installed segments in one deployment.
    pub segments: usize,
    /// Journeys (drafts included) in one deployment.
    pub journeys: usize,
    /// Installed analyses (funnels) in one deployment: each is a dataflow.
    pub analyses: usize,
    /// How far back a window may reach: the event retention (`retention.events`, not a
    /// `[limits]` key), `None` when events are kept forever.
    #[serde(skip)]
    pub retention: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            condition_depth: 32,
            condition_width: 256,
            list_values: 10_000,
            sequence_steps: MAX_SEQUENCE_STEPS,
            journey_nodes: 256,
            journey_conditions: MAX_JOURNEY_CONDITIONS,
            string_bytes: 4096,
            segments: 1000,
            journeys: 1000,
            analyses: 100,
            retention: None,
        }
    }
}

impl Limits {
    /// The highest every setting may go: what the engine itself can take.
    pub fn ceiling() -> Limits {
        Limits {
            condition_depth: MAX_CONDITION_DEPTH,
            condition_width: 100_000,
            list_values: 1_000_000,
            sequence_steps: MAX_SEQUENCE_STEPS,
            journey_nodes: 10_000,
            journey_conditions: MAX_JOURNEY_CONDITIONS,
            string_bytes: 1 << 20,
            segments: 1_000_000,
            journeys: 1_000_000,
            analyses: 10_000,
            retention: None,
        }
    }

    /// Every setting above its ceiling (or zero), named as in the config file.
    pub fn problems(&self) -> Vec<String> {
        let max = Limits::ceiling();
        let settings = [
            ("condition_depth", self.condition_depth, max.condition_depth),
            ("condition_width", self.condition_width, max.condition_width),
            ("list_values", self.list_values, max.list_values),
            ("sequence_steps", self.sequence_steps, max.sequence_steps),
            ("journey_nodes", self.journey_nodes, max.journey_nodes),
            ("journey_conditions", self.journey_conditions, max.journey_conditions),
            ("string_bytes", self.string_bytes, max.string_bytes),
            ("segments", self.segments, max.segments),
            ("journeys", self.journeys, max.journeys),
            ("analyses", self.analyses, max.analyses),
        ];
        settings
            .into_iter()
            .filter(|(_, value, max)| *value == 0 || value > max)
            .map(|(name, value, max)| format!("limits.{name} = {value}: must be between 1 and {max}"))
            .collect()
    }
}

/// The nesting depth of a JSON value (a scalar is 0), found without recursion.
pub fn json_depth(v: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            serde_json::Value::Object(o) => stack.extend(o.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_within_the_ceilings_and_zero_or_too_much_is_named() {
        assert!(Limits::default().problems().is_empty());
        let bad = Limits { sequence_steps: 65, segments: 0, ..Limits::default() };
        let problems = bad.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("limits.sequence_steps = 65"), "{problems:?}");
    }

    #[test]
    fn depth_of_nested_values() {
        assert_eq!(json_depth(&serde_json::json!(1)), 0);
        assert_eq!(json_depth(&serde_json::json!({"a": [1, {"b": []}]})), 3);
    }
}
