//! The report's output formats: JSON (the source of truth), HTML, PDF and OSCAL.

use crate::model::Report;

/// A report that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("pdf: {0}")]
    Pdf(String),
}

/// Deterministic JSON bytes (pretty, trailing newline).
pub fn json(report: &Report) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(report).unwrap_or_default();
    out.push(b'\n');
    out
}

/// One self-contained, escaped HTML page.
pub fn html(report: &Report) -> String {
    let _ = report;
    String::new()
}

/// A PDF document.
pub fn pdf(report: &Report) -> Result<Vec<u8>, RenderError> {
    let _ = report;
    Err(RenderError::Pdf("not implemented yet".into()))
}

/// OSCAL `assessment-results` JSON with deterministic UUIDs.
pub fn oscal(report: &Report) -> Vec<u8> {
    let _ = report;
    Vec::new()
}
