//! Typed service configuration: a TOML document (a file, or one section of `flk up`'s stack
//! file) deserialized into the service's own struct, after the environment variables the
//! service names ([`ServiceConfig::ENV`]) have been written over the keys they stand for.
//!
//! * Unknown keys are refused (every config struct is `deny_unknown_fields`), and every error
//!   names the key, and the variable when the value came from the environment.
//! * Defaults live in each struct's `Default`; a key absent from the file keeps its default.
//! * The environment always wins over the file, so a chart can set a value without editing
//!   the file.
//! * [`ServiceConfig::redact`] blanks secrets before a config is printed or logged.
//!
//! ```
//! use flk_runtime::config::{EnvVar, ServiceConfig, ConfigError};
//! #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct Demo { listen: String, batch: u64 }
//! impl ServiceConfig for Demo {
//!     const ENV: &'static [EnvVar] = &[
//!         EnvVar::string("DEMO_LISTEN", "listen"),
//!         EnvVar::number("DEMO_BATCH", "batch"),
//!     ];
//!     fn validate(&self) -> Result<(), ConfigError> { Ok(()) }
//! }
//! let cfg: Demo = flk_runtime::config::load(None, |k| (k == "DEMO_BATCH").then(|| "7".into())).unwrap();
//! assert_eq!(cfg.batch, 7);
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The document does not parse, or a key is unknown or has the wrong type.
    #[error("invalid config {origin}: {message}")]
    Parse { origin: String, message: String },
    /// An environment variable's value is unusable.
    #[error("invalid value for {name}: {message}")]
    Env { name: &'static str, message: String },
    /// The values parse but do not make a usable configuration.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// How an environment variable's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// Taken as it is.
    String,
    /// As it is; the empty string removes the key (back to its default, usually unset).
    OptionalString,
    /// `true`/`false`, also `1`/`0`, `on`/`off`, `yes`/`no`.
    Bool,
    /// An integer, or else a float.
    Number,
    /// Comma-separated strings, each trimmed, empty items dropped.
    List,
}

/// One environment override: variable `name` sets the dotted key `key`.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    pub key: &'static str,
    pub kind: EnvKind,
}

impl EnvVar {
    pub const fn string(name: &'static str, key: &'static str) -> EnvVar {
        EnvVar {
            name,
            key,
            kind: EnvKind::String,
        }
    }
    pub const fn optional(name: &'static str, key: &'static str) -> EnvVar {
        EnvVar {
            name,
            key,
            kind: EnvKind::OptionalString,
        }
    }
    pub const fn bool(name: &'static str, key: &'static str) -> EnvVar {
        EnvVar {
            name,
            key,
            kind: EnvKind::Bool,
        }
    }
    pub const fn number(name: &'static str, key: &'static str) -> EnvVar {
        EnvVar {
            name,
            key,
            kind: EnvKind::Number,
        }
    }
    pub const fn list(name: &'static str, key: &'static str) -> EnvVar {
        EnvVar {
            name,
            key,
            kind: EnvKind::List,
        }
    }

    fn value(&self, text: &str) -> Result<Option<Value>, ConfigError> {
        let env = |message: &str| ConfigError::Env {
            name: self.name,
            message: format!("{message} (for `{}`)", self.key),
        };
        Ok(Some(match self.kind {
            EnvKind::String => Value::String(text.to_owned()),
            EnvKind::OptionalString if text.trim().is_empty() => return Ok(None),
            EnvKind::OptionalString => Value::String(text.to_owned()),
            EnvKind::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" => Value::Boolean(true),
                "0" | "false" | "off" | "no" => Value::Boolean(false),
                _ => return Err(env("expected true or false")),
            },
            EnvKind::Number => {
                let t = text.trim();
                if let Ok(i) = t.parse::<i64>() {
                    Value::Integer(i)
                } else if let Ok(f) = t.parse::<f64>()
                    && f.is_finite()
                {
                    Value::Float(f)
                } else {
                    return Err(env(&format!("expected a number, got {t:?}")));
                }
            }
            EnvKind::List => Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
        }))
    }
}

/// A service's configuration struct.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// The environment variables that override keys.
    const ENV: &'static [EnvVar];

    /// More of them, e.g. the mesh security keys of [`crate::server_env!`] and
    /// [`crate::peer_env!`].
    const MORE_ENV: &'static [&'static [EnvVar]] = &[];

    /// Checks what types cannot: ranges, pairs of keys that go together.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Replaces secrets (passwords in URLs, inline keys) before printing.
    fn redact(&mut self) {}
}

/// The variables of a port's own security (`[tls]`, `[auth]`): `<PREFIX>_TLS_CERT`,
/// `_TLS_KEY`, `_TLS_CLIENT_CA`, `_AUTH_TOKEN_FILE`, `_AUTH_TOKEN_ENV`, `_AUTH_TOKEN_SHA256`.
#[macro_export]
macro_rules! server_env {
    ($prefix:literal) => {
        [
            $crate::config::EnvVar::optional(concat!($prefix, "_TLS_CERT"), "tls.cert"),
            $crate::config::EnvVar::optional(concat!($prefix, "_TLS_KEY"), "tls.key"),
            $crate::config::EnvVar::optional(concat!($prefix, "_TLS_CLIENT_CA"), "tls.client_ca"),
            $crate::config::EnvVar::optional(
                concat!($prefix, "_AUTH_TOKEN_FILE"),
                "auth.token_file",
            ),
            $crate::config::EnvVar::optional(concat!($prefix, "_AUTH_TOKEN_ENV"), "auth.token_env"),
            $crate::config::EnvVar::optional(
                concat!($prefix, "_AUTH_TOKEN_SHA256"),
                "auth.token_sha256",
            ),
        ]
    };
}

/// The variables of a service's credentials towards its peers (`[peer]`): `<PREFIX>_PEER_CA`,
/// `_PEER_CERT`, `_PEER_KEY`, `_PEER_SERVER_NAME`, `_PEER_TOKEN_FILE`, `_PEER_TOKEN_ENV`.
#[macro_export]
macro_rules! peer_env {
    ($prefix:literal) => {
        [
            $crate::config::EnvVar::optional(concat!($prefix, "_PEER_CA"), "peer.ca"),
            $crate::config::EnvVar::optional(concat!($prefix, "_PEER_CERT"), "peer.cert"),
            $crate::config::EnvVar::optional(concat!($prefix, "_PEER_KEY"), "peer.key"),
            $crate::config::EnvVar::optional(
                concat!($prefix, "_PEER_SERVER_NAME"),
                "peer.server_name",
            ),
            $crate::config::EnvVar::optional(
                concat!($prefix, "_PEER_TOKEN_FILE"),
                "peer.token_file",
            ),
            $crate::config::EnvVar::optional(concat!($prefix, "_PEER_TOKEN_ENV"), "peer.token_env"),
        ]
    };
}

/// Reads `path` (if any), applies the environment (`vars` looks a variable up), validates.
pub fn load<T: ServiceConfig>(
    path: Option<&Path>,
    vars: impl Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let (table, origin) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?;
            let origin = format!("file {}", p.display());
            let table = text.parse::<Table>().map_err(|e| ConfigError::Parse {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
            (table, origin)
        }
        None => (Table::new(), "(defaults)".to_owned()),
    };
    from_table(table, &origin, vars)
}

/// [`load`] of an already parsed document, e.g. a section of a larger file; `origin` names it
/// in errors.
pub fn from_table<T: ServiceConfig>(
    mut table: Table,
    origin: &str,
    vars: impl Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let mut from_env: Vec<&EnvVar> = Vec::new();
    for var in T::ENV
        .iter()
        .chain(T::MORE_ENV.iter().flat_map(|v| v.iter()))
    {
        let Some(text) = vars(var.name) else { continue };
        let value = var.value(&text)?;
        set(&mut table, var.key, value).map_err(|message| ConfigError::Env {
            name: var.name,
            message,
        })?;
        from_env.push(var);
    }
    let cfg: T = serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        let message = e.inner().to_string();
        match from_env.iter().find(|v| v.key == key) {
            Some(var) => ConfigError::Env {
                name: var.name,
                message: format!("`{key}`: {message}"),
            },
            None if key == "." || key.is_empty() => ConfigError::Parse {
                origin: origin.to_owned(),
                message,
            },
            None => ConfigError::Parse {
                origin: origin.to_owned(),
                message: format!("`{key}`: {message}"),
            },
        }
    })?;
    cfg.validate()?;
    Ok(cfg)
}

/// The configuration as TOML, secrets redacted.
pub fn to_toml<T: ServiceConfig + Clone>(cfg: &T) -> String {
    let mut c = cfg.clone();
    c.redact();
    toml::to_string(&c).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
}

/// Writes `value` at the dotted `key` (creating tables on the way); `None` removes it.
fn set(table: &mut Table, key: &str, value: Option<Value>) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut at = table;
    for part in parts {
        let next = at
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        at = match next {
            Value::Table(t) => t,
            _ => return Err(format!("`{part}` is not a table, cannot set `{key}`")),
        };
    }
    match value {
        Some(v) => {
            at.insert(last.to_owned(), v);
        }
        None => {
            at.remove(last);
        }
    }
    Ok(())
}

/// Hides the password of `scheme://user:password@host` URLs and of libpq `password=...`
/// strings.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:<redacted>@{host}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=<redacted>"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks that a URL is `http://` or `https://` (what every peer URL must be).
pub fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "`{key}` {url:?} must start with http:// or https://"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        listen: String,
        url: Option<String>,
        fsync: bool,
        batch: u64,
        ratio: f64,
        tenants: Vec<String>,
        inner: Inner,
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        secret: Option<String>,
        depth: u32,
    }

    impl Default for Demo {
        fn default() -> Self {
            Demo {
                listen: "127.0.0.1:1".into(),
                url: None,
                fsync: true,
                batch: 10,
                ratio: 0.5,
                tenants: vec!["default".into()],
                inner: Inner::default(),
            }
        }
    }

    impl ServiceConfig for Demo {
        const ENV: &'static [EnvVar] = &[
            EnvVar::string("D_LISTEN", "listen"),
            EnvVar::optional("D_URL", "url"),
            EnvVar::bool("D_FSYNC", "fsync"),
            EnvVar::number("D_BATCH", "batch"),
            EnvVar::number("D_RATIO", "ratio"),
            EnvVar::list("D_TENANTS", "tenants"),
            EnvVar::number("D_DEPTH", "inner.depth"),
            EnvVar::string("D_SECRET", "inner.secret"),
        ];
        fn validate(&self) -> Result<(), ConfigError> {
            if self.batch == 0 {
                return Err(ConfigError::Invalid("`batch` must be positive".into()));
            }
            Ok(())
        }
        fn redact(&mut self) {
            if self.inner.secret.is_some() {
                self.inner.secret = Some("<redacted>".into());
            }
        }
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn environment_overrides_the_file_with_typed_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.toml");
        std::fs::write(&path, "batch = 3\nurl = \"http://x\"\n[inner]\ndepth = 2\n").unwrap();
        let cfg: Demo = load(
            Some(&path),
            env(&[
                ("D_FSYNC", "off"),
                ("D_RATIO", "2"),
                ("D_TENANTS", " a, b ,,"),
                ("D_DEPTH", "12"),
                ("D_URL", ""),
                ("D_SECRET", "hunter2"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.batch, 3);
        assert!(!cfg.fsync);
        assert_eq!(cfg.ratio, 2.0);
        assert_eq!(cfg.tenants, ["a", "b"]);
        assert_eq!(cfg.inner.depth, 12);
        assert_eq!(cfg.url, None, "an empty optional value unsets the key");
        let printed = to_toml(&cfg);
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        let back: Demo = toml::from_str(&printed).unwrap();
        assert_eq!(back.inner.depth, 12);
        assert_eq!(load::<Demo>(None, |_| None).unwrap(), Demo::default());
    }

    #[test]
    fn errors_name_the_key_and_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.toml");
        std::fs::write(&path, "[inner]\ndeph = 2\n").unwrap();
        let err = load::<Demo>(Some(&path), |_| None).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("deph"), "{err}");
        assert!(err.to_string().contains("inner"), "{err}");
        std::fs::write(&path, "batch = \"many\"\n").unwrap();
        let err = load::<Demo>(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("`batch`"), "{err}");
        std::fs::write(&path, "batch = [").unwrap();
        assert!(matches!(
            load::<Demo>(Some(&path), |_| None).unwrap_err(),
            ConfigError::Parse { .. }
        ));
        let err = load::<Demo>(None, env(&[("D_BATCH", "soon")])).unwrap_err();
        assert!(err.to_string().contains("D_BATCH"), "{err}");
        let err = load::<Demo>(None, env(&[("D_DEPTH", "-1")])).unwrap_err();
        assert!(err.to_string().contains("D_DEPTH"), "{err}");
        assert!(err.to_string().contains("inner.depth"), "{err}");
        let err = load::<Demo>(None, env(&[("D_FSYNC", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("D_FSYNC"), "{err}");
        let err = load::<Demo>(None, env(&[("D_BATCH", "0")])).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
        let missing = dir.path().join("missing.toml");
        assert!(matches!(
            load::<Demo>(Some(&missing), |_| None).unwrap_err(),
            ConfigError::Read { .. }
        ));
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db:5432/flk"),
            "postgres://u:<redacted>@db:5432/flk"
        );
        assert_eq!(
            redact_url("host=db user=u password=hunter2"),
            "host=db user=u password=<redacted>"
        );
        assert_eq!(redact_url("redis://db:6379/0"), "redis://db:6379/0");
    }
}
