//! The one error mapping: a small closed set of kinds, each with its gRPC code and HTTP
//! status, carried across gRPC in the status metadata so the gateway answers REST clients
//! with exactly the code and message the service chose.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key for the snake_case error code.
pub const ERROR_CODE_METADATA: &str = "x-flk-error-code";
/// Metadata key for the retry hint in seconds.
pub const RETRY_AFTER_METADATA: &str = "retry-after";

/// What went wrong, in terms a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Malformed JSON or PCS structure: 400 / INVALID_ARGUMENT.
    InvalidArgument,
    /// Signature missing or invalid, unknown tenant: 401 / UNAUTHENTICATED.
    Unauthenticated,
    /// Unknown record: 404 / NOT_FOUND.
    NotFound,
    /// Body over the limit: 413 / OUT_OF_RANGE.
    PayloadTooLarge,
    /// Rate limit or quota: 429 / RESOURCE_EXHAUSTED.
    RateLimited,
    /// A required store is unavailable: 503 / UNAVAILABLE.
    Unavailable,
    /// A bug or an unexpected state: 500 / INTERNAL.
    Internal,
    /// The request conflicts with the state it applies to: 409 / FAILED_PRECONDITION.
    FailedPrecondition,
    /// The answer did not come within the deadline: 504 / DEADLINE_EXCEEDED.
    DeadlineExceeded,
    /// A credential that is valid but not for this (an X-Tenant-Id that disagrees with the
    /// token, a tenant token on an admin route): 403 / PERMISSION_DENIED.
    PermissionDenied,
    /// The client did not send its request body within the deadline (its fault, not the
    /// server's): 408 / DEADLINE_EXCEEDED.
    RequestTimeout,
    /// The path exists but not with this method: 405 / UNIMPLEMENTED.
    MethodNotAllowed,
}

impl ErrorKind {
    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::PayloadTooLarge => Code::OutOfRange,
            ErrorKind::RateLimited => Code::ResourceExhausted,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::RequestTimeout => Code::DeadlineExceeded,
            ErrorKind::MethodNotAllowed => Code::Unimplemented,
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::RateLimited => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
            ErrorKind::FailedPrecondition => 409,
            ErrorKind::DeadlineExceeded => 504,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::MethodNotAllowed => 405,
        }
    }

    fn from_grpc(code: Code) -> ErrorKind {
        match code {
            Code::InvalidArgument => ErrorKind::InvalidArgument,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::NotFound => ErrorKind::NotFound,
            Code::OutOfRange => ErrorKind::PayloadTooLarge,
            Code::ResourceExhausted => ErrorKind::RateLimited,
            Code::Unavailable => ErrorKind::Unavailable,
            Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            Code::FailedPrecondition => ErrorKind::FailedPrecondition,
            _ => ErrorKind::Internal,
        }
    }
}

/// An error answered to a client: kind, snake_case code, lowercase message, retry hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// The PROTOCOL.md section 5 answer to a refused admission: 429 with `Retry-After`.
    pub fn refused(tenant: &str, r: &flk_core::admission::Refusal) -> ApiError {
        use flk_core::admission::Refusal;
        let message = match r {
            Refusal::RateLimited { .. } => format!("tenant {tenant:?} is over its rate limit"),
            Refusal::QuotaExceeded { limit, .. } => {
                format!("tenant {tenant:?} has used its daily quota of {limit}")
            }
        };
        ApiError::new(ErrorKind::RateLimited, r.code(), message).with_retry_after(r.retry_after())
    }

    pub fn with_retry_after(mut self, d: Duration) -> ApiError {
        self.retry_after = Some(d);
        self
    }

    /// `Retry-After` in whole seconds, at least 1 when a hint is set.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| d.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// The REST error body `{"error": {"code", "message"}}`, as JSON text.
    pub fn json_body(&self) -> String {
        let mut out = String::with_capacity(64 + self.message.len());
        out.push_str("{\"error\":{\"code\":");
        push_json_str(&mut out, &self.code);
        out.push_str(",\"message\":");
        push_json_str(&mut out, &self.message);
        out.push_str("}}");
        out
    }

    /// Recovers the error a service sent (or a transport failure) from a gRPC status.
    pub fn from_status(status: &Status) -> ApiError {
        let kind = ErrorKind::from_grpc(status.code());
        let code = status
            .metadata()
            .get(ERROR_CODE_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| match kind {
                ErrorKind::Unavailable => "unavailable".to_owned(),
                _ => format!("{:?}", status.code()).to_lowercase(),
            });
        let retry_after = status
            .metadata()
            .get(RETRY_AFTER_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        ApiError {
            kind,
            code,
            message: status.message().to_owned(),
            retry_after,
        }
    }
}

fn push_json_str(out: &mut String, s: &str) {
    let mut buf = Vec::with_capacity(s.len() + 2);
    flk_core::canon::write_json_string(&mut buf, s);
    // write_json_string emits ASCII only.
    out.push_str(std::str::from_utf8(&buf).unwrap_or("\"\""));
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let mut status = Status::new(e.kind.grpc_code(), e.message.clone());
        if let Ok(v) = MetadataValue::try_from(e.code.as_str()) {
            status.metadata_mut().insert(ERROR_CODE_METADATA, v);
        }
        if let Some(secs) = e.retry_after_secs()
            && let Ok(v) = MetadataValue::try_from(secs.to_string())
        {
            status.metadata_mut().insert(RETRY_AFTER_METADATA, v);
        }
        status
    }
}

impl From<&ApiError> for crate::v1::ItemError {
    /// The per-item error of a `SubmitStream` answer: the same code, message and retry hint
    /// the unary call would carry in its status.
    fn from(e: &ApiError) -> crate::v1::ItemError {
        crate::v1::ItemError {
            grpc_code: e.kind.grpc_code() as i32,
            http_status: u32::from(e.kind.http_status()),
            code: e.code.clone(),
            message: e.message.clone(),
            retry_after_secs: e.retry_after_secs().unwrap_or(0) as u32,
        }
    }
}

impl From<crate::v1::ItemError> for ApiError {
    /// Recovers the error a service answered for one `SubmitStream` item.
    fn from(e: crate::v1::ItemError) -> ApiError {
        let kind = ErrorKind::from_grpc(Code::from_i32(e.grpc_code));
        ApiError {
            kind,
            code: e.code,
            message: e.message,
            retry_after: (e.retry_after_secs > 0)
                .then(|| Duration::from_secs(u64::from(e.retry_after_secs))),
        }
    }
}

impl From<flk_core::ParseError> for ApiError {
    fn from(e: flk_core::ParseError) -> ApiError {
        ApiError::new(ErrorKind::InvalidArgument, e.kind.code(), e.message)
    }
}

impl From<flk_core::SignatureError> for ApiError {
    fn from(e: flk_core::SignatureError) -> ApiError {
        ApiError::new(ErrorKind::Unauthenticated, e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_status() {
        let e = ApiError::new(
            ErrorKind::Unavailable,
            "store_unavailable",
            "dedup store is down",
        )
        .with_retry_after(Duration::from_millis(1500));
        let status = Status::from(e.clone());
        assert_eq!(status.code(), Code::Unavailable);
        let back = ApiError::from_status(&status);
        assert_eq!(back.code, "store_unavailable");
        assert_eq!(back.message, "dedup store is down");
        assert_eq!(back.retry_after_secs(), Some(2));
        assert_eq!(back.kind.http_status(), 503);
        let body: serde_json::Value = serde_json::from_str(&e.json_body()).unwrap();
        assert_eq!(body["error"]["code"], "store_unavailable");
    }

    #[test]
    fn round_trips_through_a_stream_item_error() {
        for (e, http) in [
            (
                ApiError::new(ErrorKind::RateLimited, "rate_limited", "slow down")
                    .with_retry_after(Duration::from_millis(200)),
                429,
            ),
            (
                ApiError::new(ErrorKind::Unauthenticated, "bad_signature", "no"),
                401,
            ),
        ] {
            let item = crate::v1::ItemError::from(&e);
            assert_eq!(item.http_status, http);
            let back = ApiError::from(item);
            assert_eq!(back.kind, e.kind);
            assert_eq!(
                (back.code.as_str(), back.message.as_str()),
                (e.code.as_str(), e.message.as_str())
            );
            assert_eq!(back.retry_after_secs(), e.retry_after_secs());
        }
    }
}
