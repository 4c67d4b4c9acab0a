//! Durations in definitions: `<integer><unit>` strings with units `ms s m h d w`.

use serde::{Serialize, Serializer};

/// A non-negative span of event time, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

/// The longest duration anywhere: 100 years (36500d), so that an event time plus a duration
/// stays far inside the range of a `u64` of milliseconds.
pub const MAX: Duration = Duration(36_500 * 86_400_000);

const UNITS: [(&str, u64); 6] =
    [("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

impl Duration {
    /// Parses `<integer><unit>`; the error says what was expected.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        if number.is_empty() {
            return Err(format!("duration {text:?} must start with an integer, as in \"30d\""));
        }
        let scale = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, s)| *s)
            .ok_or_else(|| format!("duration {text:?} has unit {unit:?}; expected one of ms, s, m, h, d, w"))?;
        let too_large = || format!("duration {text:?} is too large (at most 36500d, 100 years)");
        let n: u64 = number.parse().map_err(|_| too_large())?;
        n.checked_mul(scale).map(Duration).filter(|d| *d <= MAX).ok_or_else(too_large)
    }

    /// Milliseconds.
    pub fn millis(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (unit, scale) in UNITS {
            if self.0.is_multiple_of(scale) && (self.0 > 0 || unit == "ms") {
                return write!(f, "{}{}", self.0 / scale, unit);
            }
        }
        write!(f, "{}ms", self.0)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(Duration::parse("250ms"), Ok(Duration(250)));
        assert_eq!(Duration::parse("3s"), Ok(Duration(3_000)));
        assert_eq!(Duration::parse("2m"), Ok(Duration(120_000)));
        assert_eq!(Duration::parse("1h"), Ok(Duration(3_600_000)));
        assert_eq!(Duration::parse("30d"), Ok(Duration(2_592_000_000)));
        assert_eq!(Duration::parse("1w"), Ok(Duration(604_800_000)));
        assert_eq!(Duration::parse("36500d"), Ok(MAX));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", "d", "1", "1y", "-1d", "1.5h", "99999999999999999999d", "36501d"] {
            assert!(Duration::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(Duration(2_592_000_000).to_string(), "30d");
        assert_eq!(Duration(90_000).to_string(), "90s");
        assert_eq!(Duration(0).to_string(), "0ms");
    }
}
