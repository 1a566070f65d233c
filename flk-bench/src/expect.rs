//! What the server must answer to a generated item, what it did answer, and whether the two
//! match.

use std::fmt;

use flk_core::{Outcome, ReasonCode};

/// The answer PROTOCOL.md requires for an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// 200 (accepted) or 202 (escalated, rejected) with this outcome body.
    Decision {
        outcome: Outcome,
        reason: ReasonCode,
        duplicate: bool,
    },
    /// An error body with this status and code.
    Refused { status: u16, code: &'static str },
}

impl Expected {
    /// The HTTP status (for gRPC: the status of the equivalent REST answer).
    pub fn status(&self) -> u16 {
        match self {
            Expected::Decision { outcome, .. } => outcome.http_status(),
            Expected::Refused { status, .. } => *status,
        }
    }

    /// Whether `got` is this answer.
    pub fn matches(&self, got: &Observed) -> bool {
        match (self, got) {
            (
                Expected::Decision {
                    outcome,
                    reason,
                    duplicate,
                },
                Observed::Decision {
                    status,
                    outcome: got_outcome,
                    reason_code,
                    duplicate: got_duplicate,
                },
            ) => {
                *status == outcome.http_status()
                    && got_outcome == outcome.as_str()
                    && reason_code == reason.as_str()
                    && got_duplicate == duplicate
            }
            (
                Expected::Refused { status, code },
                Observed::Refused {
                    status: got_status,
                    code: got_code,
                },
            ) => status == got_status && code == got_code,
            _ => false,
        }
    }
}

impl fmt::Display for Expected {
    /// `202 escalated regime_mismatch`, `200 accepted ok duplicate`, `401 signature_invalid`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Decision {
                outcome,
                reason,
                duplicate,
            } => {
                write!(
                    f,
                    "{} {} {}",
                    outcome.http_status(),
                    outcome.as_str(),
                    reason.as_str()
                )?;
                if *duplicate {
                    f.write_str(" duplicate")?;
                }
                Ok(())
            }
            Expected::Refused { status, code } => write!(f, "{status} {code}"),
        }
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// An outcome body (REST 200/202, gRPC OK).
    Decision {
        status: u16,
        outcome: String,
        reason_code: String,
        duplicate: bool,
    },
    /// An error answer: its (REST-equivalent) status and error code.
    Refused { status: u16, code: String },
    /// No answer: `timeout`, `transport` (connection failed or broke) or `bad_answer` (an
    /// answer that is not the contract's).
    Failed { what: &'static str },
}

impl Observed {
    /// The HTTP status as a report key: `200`, `401`, or `timeout` / `transport` /
    /// `bad_answer` when there was none.
    pub fn status_label(&self) -> String {
        match self {
            Observed::Decision { status, .. } | Observed::Refused { status, .. } => {
                status.to_string()
            }
            Observed::Failed { what } => (*what).to_owned(),
        }
    }

    /// The answer without its reason: `202 escalated`, `200 accepted duplicate`,
    /// `401 signature_invalid`, `transport`.
    pub fn short_label(&self) -> String {
        match self {
            Observed::Decision {
                status,
                outcome,
                duplicate,
                ..
            } => {
                if *duplicate {
                    format!("{status} {outcome} duplicate")
                } else {
                    format!("{status} {outcome}")
                }
            }
            Observed::Refused { status, code } => format!("{status} {code}"),
            Observed::Failed { what } => (*what).to_owned(),
        }
    }

    /// Whether the request got no answer or an answer outside the contract.
    pub fn is_failure(&self) -> bool {
        matches!(self, Observed::Failed { .. })
    }
}

impl fmt::Display for Observed {
    /// Like [`Expected`]'s form, so the two can be compared by eye.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Decision {
                status,
                outcome,
                reason_code,
                duplicate,
            } => {
                write!(f, "{status} {outcome} {reason_code}")?;
                if *duplicate {
                    f.write_str(" duplicate")?;
                }
                Ok(())
            }
            Observed::Refused { status, code } => write!(f, "{status} {code}"),
            Observed::Failed { what } => f.write_str(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_compares_every_part() {
        let e = Expected::Decision {
            outcome: Outcome::Escalated,
            reason: ReasonCode::RegimeMismatch,
            duplicate: false,
        };
        let got = Observed::Decision {
            status: 202,
            outcome: "escalated".into(),
            reason_code: "regime_mismatch".into(),
            duplicate: false,
        };
        assert!(e.matches(&got));
        assert_eq!(e.to_string(), got.to_string());
        let dup = Observed::Decision {
            status: 202,
            outcome: "escalated".into(),
            reason_code: "regime_mismatch".into(),
            duplicate: true,
        };
        assert!(!e.matches(&dup));
        let refused = Expected::Refused {
            status: 401,
            code: "signature_invalid",
        };
        assert!(refused.matches(&Observed::Refused {
            status: 401,
            code: "signature_invalid".into()
        }));
        assert!(!refused.matches(&Observed::Failed { what: "transport" }));
    }
}
