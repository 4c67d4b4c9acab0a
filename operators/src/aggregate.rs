//! `aggregate`: users whose sum / avg / min / max of a numeric property, or count of
//! distinct values of any property, over matching events in the window compares true
//! against a number. Arithmetic is exact and order-independent: values are fixed-point
//! micro-units, sums are `i128`, averages are compared as fractions.

use crate::window::window;
use crate::{Time, UserId, Users, FOREVER};
use differential_dataflow::VecCollection;
use journeyflow_types::{AggFn, Op, Value};
use std::cmp::Ordering;

/// Fixed-point micro-units of a number (saturating beyond about ±9.2e12).
pub fn micros(x: f64) -> i128 {
    (x * 1e6).round() as i64 as i128
}

/// Members of an `aggregate` condition, given matching events as `((user, value), ts)`.
pub fn aggregate<'s>(
    values: VecCollection<'s, Time, ((UserId, Value), Time)>,
    within: Option<Time>,
    func: AggFn,
    op: Op,
    target: f64,
) -> Users<'s> {
    let target = micros(target);
    let entries =
        values.map(move |((user, value), ts)| (user, value, ts, within.map_or(FOREVER, |w| ts.saturating_add(w))));
    window(entries, "Aggregate", move |present: &[(Value, isize)]| {
        evaluate(func, present).is_some_and(|(num, den)| compare(op, num.cmp(&(target * den))))
    })
}

/// The aggregate as a fraction `num / den` of micro-units (`den > 0`), or `None` when no
/// value counts (no event, or no numeric value for a numeric function).
pub fn evaluate(func: AggFn, input: &[(Value, isize)]) -> Option<(i128, i128)> {
    if func == AggFn::CountDistinct {
        let distinct = input.iter().filter(|(_, r)| *r > 0).count() as i128;
        return (distinct > 0).then_some((distinct * 1_000_000, 1));
    }
    let numbers = input.iter().filter(|(_, r)| *r > 0).filter_map(|(v, r)| v.as_f64().map(|x| (micros(x), *r as i128)));
    match func {
        AggFn::Sum | AggFn::Avg => {
            let (sum, count) = numbers.fold((0i128, 0i128), |(s, c), (x, r)| (s + x * r, c + r));
            (count > 0).then_some(if func == AggFn::Sum { (sum, 1) } else { (sum, count) })
        }
        AggFn::Min => numbers.map(|(x, _)| x).min().map(|x| (x, 1)),
        AggFn::Max => numbers.map(|(x, _)| x).max().map(|x| (x, 1)),
        AggFn::CountDistinct => None,
    }
}

/// Whether `ordering` (aggregate vs target) satisfies a numeric comparison.
pub fn compare(op: Op, ordering: Ordering) -> bool {
    match op {
        Op::Eq => ordering.is_eq(),
        Op::Ne => ordering.is_ne(),
        Op::Gt => ordering.is_gt(),
        Op::Gte => ordering.is_ge(),
        Op::Lt => ordering.is_lt(),
        Op::Lte => ordering.is_le(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journeyflow_types::Num;

    fn n(x: f64) -> Value {
        Value::Num(Num(x))
    }

    #[test]
    fn sums_are_exact_in_any_order() {
        let (a, b, c) = (n(0.1), n(0.2), n(0.3));
        let one = [(a.clone(), 1), (b.clone(), 1), (c.clone(), 1)];
        let other = [(c, 1), (a, 1), (b, 1)];
        assert_eq!(evaluate(AggFn::Sum, &one), Some((600_000, 1)));
        assert_eq!(evaluate(AggFn::Sum, &one), evaluate(AggFn::Sum, &other));
    }

    #[test]
    fn average_min_max_and_distinct() {
        let (a, b, s) = (n(1.0), n(4.0), Value::Str("x".into()));
        let input = [(a, 2), (b, 1), (s.clone(), 1)];
        assert_eq!(evaluate(AggFn::Avg, &input), Some((6_000_000, 3)));
        assert_eq!(evaluate(AggFn::Min, &input), Some((1_000_000, 1)));
        assert_eq!(evaluate(AggFn::Max, &input), Some((4_000_000, 1)));
        assert_eq!(evaluate(AggFn::CountDistinct, &input), Some((3_000_000, 1)));
        assert_eq!(evaluate(AggFn::Sum, &[(s, 1)]), None);
        assert!(compare(Op::Gte, Ordering::Equal) && !compare(Op::Gt, Ordering::Equal));
    }
}
