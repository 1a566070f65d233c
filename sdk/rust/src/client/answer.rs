//! One answer to a submission, whatever the transport, and what a sender does with it.

use std::string::String;
use std::time::Duration;

/// What a sender does with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerClass {
    /// 200 or 202: decided and durably recorded (duplicates included). Done.
    Decided,
    /// Refused for good (400, 401, 403, 404, 409, 413): resending the same bytes cannot
    /// succeed. The outbox moves these to its dead-letter file.
    Refused,
    /// Try again later (408, 429, 5xx), after `Retry-After` when given.
    Retryable,
}

/// The answer to one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The REST status (for gRPC, the status the REST route gives for the same answer).
    pub http_status: u16,
    /// `accepted`, `escalated` or `rejected` for decided submissions.
    pub outcome: Option<String>,
    pub pcs_id: Option<String>,
    /// A stored outcome (the same `pcs_id` was decided before).
    pub duplicate: bool,
    pub reason_code: Option<String>,
    /// The error body's `code` for refusals.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retry_after: Option<Duration>,
    /// The answer's JSON body (REST), or the outcome rendered as JSON (gRPC).
    pub body: serde_json::Value,
}

impl Answer {
    pub fn class(&self) -> AnswerClass {
        match self.http_status {
            200 | 202 => AnswerClass::Decided,
            408 | 429 => AnswerClass::Retryable,
            s if s >= 500 => AnswerClass::Retryable,
            _ => AnswerClass::Refused,
        }
    }

    /// From a REST status, body and `Retry-After`.
    pub(crate) fn from_rest(
        status: u16,
        body: serde_json::Value,
        retry_after: Option<Duration>,
    ) -> Answer {
        let s = |k: &str| body.get(k).and_then(|v| v.as_str()).map(String::from);
        let err = body.get("error");
        let e = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        Answer {
            http_status: status,
            outcome: s("outcome"),
            pcs_id: s("pcs_id"),
            duplicate: body
                .get("duplicate")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            reason_code: s("reason_code"),
            error_code: e("code"),
            error_message: e("message"),
            retry_after,
            body,
        }
    }
}
