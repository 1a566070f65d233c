//! Control catalogs as data: the TOML format, the built-ins and their validation.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where a framework came from.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Builtin,
    File,
}

/// How a control's evidence becomes its verdict.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Fail if any evidence fails, not_applicable if all are, else pass.
    AllPass,
    /// Pass if any evidence passes, not_applicable if all are, else fail.
    AnyPass,
    /// A person judges: the verdict is `manual`.
    Manual,
}

/// One control of a catalog.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Control {
    pub id: String,
    pub title: String,
    pub description: String,
    pub evidence: Vec<String>,
    pub rule: Rule,
}

/// A control catalog.
#[derive(Clone, PartialEq, Debug)]
pub struct Framework {
    pub id: String,
    pub title: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub source: Source,
    pub controls: Vec<Control>,
}

/// A catalog that cannot be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    #[error("cannot read framework file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid framework {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// A built-in catalog: `soc2`, `iso27001`, `hipaa` or `gdpr`.
pub fn builtin(id: &str) -> Option<Framework> {
    let _ = id;
    None
}

/// Loads a custom catalog from a TOML file.
pub fn load(path: &Path) -> Result<Framework, FrameworkError> {
    Err(FrameworkError::Invalid {
        origin: path.display().to_string(),
        message: "not implemented yet".into(),
    })
}
