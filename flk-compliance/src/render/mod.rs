//! The report's output formats: JSON (the source of truth), HTML, PDF and OSCAL.

mod html;
pub mod oscal;
mod pdf;

use crate::model::Report;

/// A report that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("pdf: {0}")]
    Pdf(String),
}

/// Deterministic JSON bytes (pretty, trailing newline): struct fields in declaration order,
/// maps ordered by key, no wall-clock time.
pub fn json(report: &Report) -> Vec<u8> {
    // Serialising these types cannot fail: every map key is a string and every value is
    // plain data.
    let mut out = serde_json::to_vec_pretty(report).unwrap_or_default();
    out.push(b'\n');
    out
}

/// One self-contained, escaped HTML page.
pub fn html(report: &Report) -> String {
    html::render(report)
}

/// A PDF document (A4, Helvetica, paginated).
pub fn pdf(report: &Report) -> Result<Vec<u8>, RenderError> {
    pdf::render(report)
}

/// OSCAL `assessment-results` JSON with deterministic UUIDs (pretty, trailing newline).
pub fn oscal(report: &Report) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&oscal::document(report)).unwrap_or_default();
    out.push(b'\n');
    out
}
