//! The kinds of submission a workload is made of, and the mix that says how often each occurs
//! (`accepted=0.9,escalated=0.04,rejected=0.03,duplicate=0.02,tampered=0.01`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// What a generated submission is meant to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Valid signature, signals the default policy accepts: 200 `accepted`.
    Accepted,
    /// Valid signature, a regime mismatch, a budget deviation or a degraded agent: 202
    /// `escalated`.
    Escalated,
    /// Valid signature, a wrong `pcs_id`, an unrecomputable or out-of-tolerance `D_hat`, or
    /// `coh_star` / `r` out of bounds: 202 `rejected`.
    Rejected,
    /// The same bytes as an earlier accepted/escalated/rejected item: its stored outcome with
    /// `"duplicate": true`.
    Duplicate,
    /// A signed field changed after signing: 401 `signature_invalid`.
    Tampered,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Accepted,
        Kind::Escalated,
        Kind::Rejected,
        Kind::Duplicate,
        Kind::Tampered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Accepted => "accepted",
            Kind::Escalated => "escalated",
            Kind::Rejected => "rejected",
            Kind::Duplicate => "duplicate",
            Kind::Tampered => "tampered",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether items of this kind are decided fresh (and so can be the original of a
    /// duplicate).
    pub fn is_fresh(self) -> bool {
        matches!(self, Kind::Accepted | Kind::Escalated | Kind::Rejected)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a mix could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MixError {
    #[error("mix entry {0:?} is not KIND=FRACTION (e.g. escalated=0.04 or escalated=4%)")]
    Syntax(String),
    #[error(
        "unknown kind {0:?} in the mix (kinds: accepted, escalated, rejected, duplicate, tampered)"
    )]
    UnknownKind(String),
    #[error("kind {0} appears twice in the mix")]
    Repeated(Kind),
    #[error("fraction {value:?} of {kind} is not a number")]
    NotANumber { kind: Kind, value: String },
    #[error("fraction of {kind} is {value}, outside [0, 1]")]
    OutOfRange { kind: Kind, value: f64 },
    #[error("the mix adds up to {0}, more than 1")]
    OverOne(f64),
    #[error(
        "the mix names accepted={accepted} but adds up to {sum}, not 1 (leave accepted out to give it the remainder)"
    )]
    NotOne { accepted: f64, sum: f64 },
    #[error("a mix with duplicates needs some accepted, escalated or rejected items to repeat")]
    NothingToDuplicate,
}

/// Fractions of each kind; they add up to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Indexed like [`Kind::ALL`].
    fractions: [f64; 5],
    /// Upper bounds of each kind's share of `[0, 2^64)`, for [`Mix::kind_at`].
    thresholds: [u64; 5],
    /// Index of the last kind with a non-zero fraction.
    last: usize,
}

/// Tolerance on the sum of the fractions (they are typed by hand).
const SUM_TOLERANCE: f64 = 1e-9;

impl Mix {
    /// Only accepted items.
    pub fn accepted_only() -> Mix {
        Mix::from_fractions([1.0, 0.0, 0.0, 0.0, 0.0])
    }

    /// The default mix: mostly accepted, with some of every other kind.
    pub fn realistic() -> Mix {
        Mix::from_fractions([0.90, 0.04, 0.03, 0.02, 0.01])
    }

    fn from_fractions(fractions: [f64; 5]) -> Mix {
        // Cumulative shares of 2^64, in the order of `Kind::ALL`. The last kind with a
        // non-zero fraction takes everything up to the top, so float rounding in the sum can
        // never hand a sliver to a kind with fraction 0.
        let last = fractions.iter().rposition(|&f| f > 0.0).unwrap_or(0);
        let mut thresholds = [u64::MAX; 5];
        let mut cumulative = 0.0;
        for (i, f) in fractions.iter().enumerate().take(last) {
            cumulative += f;
            thresholds[i] = if cumulative >= 1.0 {
                u64::MAX
            } else {
                (cumulative * 18_446_744_073_709_551_616.0) as u64
            };
        }
        Mix {
            fractions,
            thresholds,
            last,
        }
    }

    /// The fraction of `kind`.
    pub fn fraction(&self, kind: Kind) -> f64 {
        self.fractions[kind as usize]
    }

    /// The kind of item `i`: a pure function of `i` that spreads each kind evenly over any
    /// stretch of indices (a Weyl sequence with the golden ratio: the share of each kind in
    /// the first `n` items is within a few items of `n * fraction`).
    pub fn kind_at(&self, i: u64) -> Kind {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // A kind with fraction 0 has an empty slot (its bound equals the one before), so
        // `position` never lands on it.
        let slot = self.thresholds.iter().position(|&t| x < t);
        Kind::ALL[slot.unwrap_or(self.last)]
    }
}

impl Default for Mix {
    fn default() -> Mix {
        Mix::realistic()
    }
}

impl FromStr for Mix {
    type Err = MixError;

    /// `KIND=FRACTION` pairs separated by commas; a fraction is a decimal in `[0, 1]` or a
    /// percentage (`4%`). Kinds left out get 0, except `accepted`, which gets the remainder;
    /// when `accepted` is named, the fractions must add up to 1.
    fn from_str(s: &str) -> Result<Mix, MixError> {
        let mut given: [Option<f64>; 5] = [None; 5];
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, value) = entry
                .split_once('=')
                .ok_or_else(|| MixError::Syntax(entry.to_owned()))?;
            let name = name.trim();
            let value = value.trim();
            let kind = Kind::parse(name).ok_or_else(|| MixError::UnknownKind(name.to_owned()))?;
            if given[kind as usize].is_some() {
                return Err(MixError::Repeated(kind));
            }
            let (number, scale) = match value.strip_suffix('%') {
                Some(n) => (n.trim(), 100.0),
                None => (value, 1.0),
            };
            let parsed: f64 = number.parse().map_err(|_| MixError::NotANumber {
                kind,
                value: value.to_owned(),
            })?;
            let fraction = parsed / scale;
            if !(0.0..=1.0).contains(&fraction) {
                return Err(MixError::OutOfRange {
                    kind,
                    value: fraction,
                });
            }
            given[kind as usize] = Some(fraction);
        }
        let others: f64 = given[1..].iter().map(|f| f.unwrap_or(0.0)).sum();
        let accepted = match given[0] {
            Some(a) => {
                let sum = a + others;
                if (sum - 1.0).abs() > SUM_TOLERANCE {
                    return Err(MixError::NotOne { accepted: a, sum });
                }
                a
            }
            None => {
                if others > 1.0 + SUM_TOLERANCE {
                    return Err(MixError::OverOne(others));
                }
                (1.0 - others).max(0.0)
            }
        };
        let mut fractions = [0.0; 5];
        fractions[0] = accepted;
        for (i, f) in given.iter().enumerate().skip(1) {
            fractions[i] = f.unwrap_or(0.0);
        }
        let fresh = fractions[0] + fractions[1] + fractions[2];
        if fractions[Kind::Duplicate as usize] > 0.0 && fresh <= 0.0 {
            return Err(MixError::NothingToDuplicate);
        }
        Ok(Mix::from_fractions(fractions))
    }
}

impl fmt::Display for Mix {
    /// The canonical form: every kind with a non-zero fraction, in [`Kind::ALL`] order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in Kind::ALL {
            let v = self.fraction(kind);
            if v > 0.0 {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{kind}={}", round_for_display(v))?;
            }
        }
        Ok(())
    }
}

/// Hides float noise from `1 - sum` (`0.8999999999999999` -> `0.9`).
fn round_for_display(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remainder_goes_to_accepted() {
        let m: Mix = "escalated=0.04, rejected=3%,duplicate=0.02,tampered=0.01"
            .parse()
            .unwrap();
        assert!((m.fraction(Kind::Accepted) - 0.90).abs() < 1e-12);
        assert_eq!(
            m.to_string(),
            "accepted=0.9,escalated=0.04,rejected=0.03,duplicate=0.02,tampered=0.01"
        );
        assert_eq!(
            m,
            "accepted=0.9,escalated=0.04,rejected=0.03,duplicate=0.02,tampered=0.01"
                .parse()
                .unwrap()
        );
    }

    #[test]
    fn kinds_are_spread_as_the_fractions_say() {
        let m = Mix::realistic();
        let n = 10_000u64;
        let mut counts = [0u64; 5];
        for i in 0..n {
            counts[m.kind_at(i) as usize] += 1;
        }
        for kind in Kind::ALL {
            let want = m.fraction(kind) * n as f64;
            let got = counts[kind as usize] as f64;
            assert!((got - want).abs() <= 10.0, "{kind}: {got} vs {want}");
        }
        // The first item is accepted, so a duplicate always has something before it.
        assert_eq!(m.kind_at(0), Kind::Accepted);
        // A kind with fraction 0 never appears.
        let only: Mix = "tampered=0.5".parse().unwrap();
        assert!((0..1000).all(|i| matches!(only.kind_at(i), Kind::Accepted | Kind::Tampered)));
        let all_tampered: Mix = "tampered=1".parse().unwrap();
        assert!((0..1000).all(|i| all_tampered.kind_at(i) == Kind::Tampered));
        assert!((0..1000).all(|i| Mix::accepted_only().kind_at(i) == Kind::Accepted));
    }
}
