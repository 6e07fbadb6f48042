//! The location rules: which GPS fixes a rider's session accepts, ignores or refuses, as
//! one pure function over the last accepted fix and the server clock.

use crate::geo::Point;

/// Fixes further ahead of the server clock than this are refused.
pub const MAX_FUTURE_MS: i64 = 60_000;
/// Fixes older than this (24 h) are refused: no phone buffers a day of points, and a
/// bounded `ts` keeps every difference between two accepted fixes far from overflow.
pub const MAX_AGE_MS: i64 = 86_400_000;
/// A move faster than this between two fixes is refused.
pub const MAX_SPEED_MPS: f64 = 70.0;
/// A fix vaguer than this does not move the live position.
pub const MAX_ACCURACY_M: f64 = 100.0;

/// One GPS fix, already checked for finite, in-range coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub at: Point,
    pub ts_ms: i64,
    pub accuracy_m: Option<f64>,
    pub speed_mps: Option<f64>,
    pub heading: Option<f64>,
}

/// What a valid fix does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixEffect {
    /// It becomes the live position.
    Moves,
    /// Kept out of the live position: older than the last fix, or too vague.
    Ignored,
}

/// Why a fix was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// `ts` more than 60 s ahead of the server.
    Future,
    /// `ts` more than 24 h behind the server.
    Stale,
    /// Faster than [`MAX_SPEED_MPS`] since the last fix (metres per second).
    Jump(f64),
}

impl Refusal {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Future => "future",
            Self::Stale => "stale",
            Self::Jump(_) => "jump",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Future => f.write_str("ts is more than 60 s in the future"),
            Self::Stale => f.write_str("ts is more than 24 h in the past"),
            Self::Jump(speed) => write!(f, "impossible jump: {speed:.0} m/s since the last fix"),
        }
    }
}

/// The location rules: `Err` with the reason for a fix that must be refused.
pub fn check_fix(last: Option<&Fix>, fix: &Fix, now_ms: i64) -> Result<FixEffect, Refusal> {
    if fix.ts_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(Refusal::Future);
    }
    if fix.ts_ms < now_ms.saturating_sub(MAX_AGE_MS) {
        return Err(Refusal::Stale);
    }
    if let Some(last) = last {
        if fix.ts_ms <= last.ts_ms {
            return Ok(FixEffect::Ignored);
        }
        let dt = fix.ts_ms.saturating_sub(last.ts_ms) as f64 / 1000.0;
        let speed = last.at.distance_m(fix.at) / dt;
        if speed > MAX_SPEED_MPS {
            return Err(Refusal::Jump(speed));
        }
    }
    if fix.accuracy_m.is_some_and(|a| a > MAX_ACCURACY_M) {
        return Ok(FixEffect::Ignored);
    }
    Ok(FixEffect::Moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(lat: f64, lng: f64, ts_ms: i64) -> Fix {
        Fix {
            at: Point::new(lat, lng).expect("valid"),
            ts_ms,
            accuracy_m: None,
            speed_mps: None,
            heading: None,
        }
    }

    #[test]
    fn extreme_timestamps_are_refused_without_wrapping() {
        let now = 1_764_000_000_000;
        let forged = fix(12.97, 77.59, i64::MIN);
        assert_eq!(check_fix(None, &forged, now), Err(Refusal::Stale));
        assert_eq!(
            check_fix(None, &fix(12.97, 77.59, now - MAX_AGE_MS - 1), now),
            Err(Refusal::Stale)
        );
        assert_eq!(
            check_fix(None, &fix(12.97, 77.59, i64::MAX), now),
            Err(Refusal::Future)
        );
        // A clock near the ends of i64 does not overflow the window arithmetic.
        assert_eq!(
            check_fix(None, &fix(0.0, 0.0, i64::MAX), i64::MAX),
            Ok(FixEffect::Moves)
        );
        assert_eq!(
            check_fix(None, &fix(0.0, 0.0, i64::MIN), i64::MIN),
            Ok(FixEffect::Moves)
        );
    }

    #[test]
    fn the_location_rules() {
        let now = 1_000_000;
        let first = fix(12.97, 77.59, now);
        assert_eq!(check_fix(None, &first, now), Ok(FixEffect::Moves));
        assert!(
            check_fix(None, &fix(12.97, 77.59, now + 61_000), now).is_err(),
            "far future"
        );
        assert_eq!(
            check_fix(None, &fix(12.97, 77.59, now + 59_000), now),
            Ok(FixEffect::Moves)
        );
        // Older than the last fix: valid, but the live position stays.
        assert_eq!(
            check_fix(Some(&first), &fix(12.98, 77.59, now - 5_000), now),
            Ok(FixEffect::Ignored)
        );
        // ~1.1 km in 10 s is 111 m/s: refused. In 60 s it is 18.5 m/s: fine.
        assert!(check_fix(Some(&first), &fix(12.98, 77.59, now + 10_000), now + 10_000).is_err());
        assert_eq!(
            check_fix(Some(&first), &fix(12.98, 77.59, now + 60_000), now + 60_000),
            Ok(FixEffect::Moves)
        );
        let vague = Fix {
            accuracy_m: Some(150.0),
            ..fix(12.9701, 77.59, now + 1_000)
        };
        assert_eq!(
            check_fix(Some(&first), &vague, now + 1_000),
            Ok(FixEffect::Ignored)
        );
        let sharp = Fix {
            accuracy_m: Some(8.0),
            ..vague
        };
        assert_eq!(
            check_fix(Some(&first), &sharp, now + 1_000),
            Ok(FixEffect::Moves)
        );
    }
}
