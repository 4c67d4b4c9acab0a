//! journeyflow's leaf crate: the event model (Segment spec), the segment language, and
//! their validation. Everything here is plain data and pure functions, shared by the
//! operators, connectors and the pipeline.

pub mod cohort;
pub mod condition;
pub mod definition;
pub mod duration;
pub mod entries;
pub mod event;
pub mod flatten;
pub mod funnel;
pub mod journey;
pub mod journey_definition;
pub mod key;
pub mod limits;
pub mod migration;
pub mod paths;
pub mod record;
pub mod shards;
pub mod template;
pub mod time;
pub mod value;
pub mod value_ref;

pub use condition::{AggFn, Aggregate, Condition, EventFilter, Op, Performed, Predicate, Sequence};
pub use definition::{
    parse_segments, parse_segments_with, validate_segments, validate_segments_with, SegmentDefinition, ValidationError,
    ValidationErrors,
};
pub use duration::Duration;
pub use event::{decode_line, decode_line_received, decode_record, DecodeError, Event, Kind};
pub use journey::{JourneyDefinition, Node};
pub use journey_definition::{parse_journeys, parse_journeys_with, validate_journey, validate_journey_with};
pub use key::{Key, KeyMap};
pub use limits::Limits;
pub use migration::{validate_migration, Migration, Placement};
pub use record::{EventView, Record};
pub use shards::Shards;
pub use value::{Num, Props, Value};
pub use value_ref::ValueRef;
