//! The JSON answers of every REST route: a JSON body with its status, and the PROTOCOL.md
//! error body (`{"error": {"code", "message"}}`) with the status of its [`ApiError`] kind and
//! `Retry-After` when the error carries a retry hint.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flk_proto::ApiError;

/// `body` (already JSON) as `application/json` with `status`.
pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The error body of `e`, its HTTP status and `Retry-After`.
pub fn error_response(e: &ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(status, e.json_body());
    if let Some(secs) = e.retry_after_secs()
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Whether a request is gRPC (its errors are then answered as gRPC statuses).
pub fn is_grpc(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// `e` in the caller's protocol: a gRPC status for gRPC requests, else the JSON error body.
pub fn error_in_protocol(headers: &axum::http::HeaderMap, e: ApiError) -> Response {
    if is_grpc(headers) {
        tonic::Status::from(e).into_http::<axum::body::Body>()
    } else {
        error_response(&e)
    }
}
