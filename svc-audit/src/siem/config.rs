//! The `[siem]` section of svc-audit's config (`[audit.siem]` in `flk up`'s stack file).
//!
//! ```toml
//! [siem]
//! spool_max_bytes = 1073741824        # per sink: encoded events waiting for delivery
//! redact = ["message"]                # envelope fields blanked before anything is spooled
//! signature_burst_threshold = 10      # signature failures of one tenant ...
//! signature_burst_window_ms = 60000   # ... within this window make a burst event (0: off)
//! # host = "audit-1"                  # `host`/`hostname` on the wire (default: the hostname)
//!
//! [[siem.sinks]]
//! name = "es-main"                    # unique: metrics label, directory siem/<name>/
//! kind = "elasticsearch"              # splunk_hec | datadog | elasticsearch | sumo
//! url = "http://127.0.0.1:9200"       # or url_env = "VAR" (Sumo: the URL is the credential)
//! index = "flk-events"                # elasticsearch only
//! token_env = "FLK_ES_TOKEN"          # or token_file = PATH; never logged
//! batch_max_events = 500
//! batch_max_bytes = 1048576
//! flush_interval_ms = 1000
//! ```
//!
//! Splunk HEC also takes `source` / `sourcetype` (defaults `flk-audit`, `flk:event`) and
//! `index`; Datadog `service`, `ddsource` (defaults `flk`, `flk`) and `tags` (the `ddtags`
//! list); Sumo `category` and `source_name` (`X-Sumo-Category` / `X-Sumo-Name`; `X-Sumo-Host`
//! is `host`).
//!
//! Without a sink in the file, the reference design's variables make one:
//! `SIEM_ENABLED=true`, `SIEM_PROVIDER` (`splunk` | `datadog` | `elasticsearch` | `sumo`),
//! `SIEM_ENDPOINT` (the URL) and `SIEM_API_KEY` (the token). Unknown kinds, missing secrets
//! and bad URLs are startup errors naming the sink.

use std::path::PathBuf;

use flk_runtime::ConfigError;
use serde::{Deserialize, Serialize};

/// What goes on the wire, by product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    SplunkHec,
    Datadog,
    Elasticsearch,
    Sumo,
}

impl SinkKind {
    pub fn label(self) -> &'static str {
        match self {
            SinkKind::SplunkHec => "splunk_hec",
            SinkKind::Datadog => "datadog",
            SinkKind::Elasticsearch => "elasticsearch",
            SinkKind::Sumo => "sumo",
        }
    }

    /// The kind of a `SIEM_PROVIDER` value.
    fn from_provider(name: &str) -> Option<SinkKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "splunk" | "splunk_hec" => Some(SinkKind::SplunkHec),
            "datadog" => Some(SinkKind::Datadog),
            "elasticsearch" | "elastic" => Some(SinkKind::Elasticsearch),
            "sumo" | "sumologic" => Some(SinkKind::Sumo),
            _ => None,
        }
    }

    fn needs_token(self) -> bool {
        matches!(self, SinkKind::SplunkHec | SinkKind::Datadog)
    }
}

/// The SIEM stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiemConfig {
    /// Per sink, the most bytes of encoded events kept on disk waiting for delivery; when it
    /// is full the stage stops reading the log (which keeps everything) until the sink drains.
    pub spool_max_bytes: u64,
    /// Envelope fields (dotted paths, e.g. `message` or `details.reason_code`) replaced by
    /// `"[redacted]"` before an event is spooled or sent.
    pub redact: Vec<String>,
    /// Signature failures of one tenant within `signature_burst_window_ms` that make a
    /// `signature_failure_burst` event (0: no burst events).
    pub signature_burst_threshold: u32,
    pub signature_burst_window_ms: u64,
    /// The host name put on events (Splunk `host`, Datadog `hostname`, `X-Sumo-Host`).
    pub host: Option<String>,
    pub sinks: Vec<SinkConfig>,
}

impl Default for SiemConfig {
    fn default() -> Self {
        SiemConfig {
            spool_max_bytes: 1 << 30,
            redact: Vec::new(),
            signature_burst_threshold: crate::ledger::DEFAULT_BURST_THRESHOLD,
            signature_burst_window_ms: crate::ledger::DEFAULT_BURST_WINDOW_MS,
            host: None,
            sinks: Vec::new(),
        }
    }
}

/// One SIEM destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    /// Checked in [`SiemConfig::validate`] so that the error names the sink.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The variable holding the URL (Sumo's HTTP source URL is its credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Elasticsearch: the index (default `flk-events`); Splunk: the HEC `index` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(default = "defaults::batch_max_events")]
    pub batch_max_events: usize,
    #[serde(default = "defaults::batch_max_bytes")]
    pub batch_max_bytes: usize,
    #[serde(default = "defaults::flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Splunk HEC `source` / `sourcetype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// Datadog `service` / `ddsource` / `ddtags` (joined with commas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ddsource: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Sumo `X-Sumo-Category` / `X-Sumo-Name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// First retry delay; the bound doubles per failed attempt up to `retry_max_ms`.
    #[serde(default = "defaults::retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    /// Per-request timeout.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
}

mod defaults {
    pub fn batch_max_events() -> usize {
        500
    }
    pub fn batch_max_bytes() -> usize {
        1 << 20
    }
    pub fn flush_interval_ms() -> u64 {
        1000
    }
    pub fn retry_initial_ms() -> u64 {
        100
    }
    pub fn retry_max_ms() -> u64 {
        30_000
    }
    pub fn request_timeout_ms() -> u64 {
        30_000
    }
}

impl SinkConfig {
    /// A sink with defaults for everything but its name, kind and URL.
    pub fn new(name: &str, kind: SinkKind, url: &str) -> SinkConfig {
        SinkConfig {
            name: name.to_owned(),
            kind: kind.label().to_owned(),
            url: Some(url.to_owned()),
            url_env: None,
            token_env: None,
            token_file: None,
            index: None,
            batch_max_events: defaults::batch_max_events(),
            batch_max_bytes: defaults::batch_max_bytes(),
            flush_interval_ms: defaults::flush_interval_ms(),
            source: None,
            sourcetype: None,
            service: None,
            ddsource: None,
            tags: Vec::new(),
            category: None,
            source_name: None,
            retry_initial_ms: defaults::retry_initial_ms(),
            retry_max_ms: defaults::retry_max_ms(),
            request_timeout_ms: defaults::request_timeout_ms(),
        }
    }

    /// The kind, or an error naming the sink.
    pub fn kind(&self) -> Result<SinkKind, ConfigError> {
        serde_json::from_value(serde_json::Value::String(self.kind.clone())).map_err(|_| {
            ConfigError::Invalid(format!(
                "siem sink {:?}: unknown kind {:?} (splunk_hec, datadog, elasticsearch or sumo)",
                self.name, self.kind
            ))
        })
    }
}

/// A sink with its secrets read: what the stage runs.
#[derive(Clone)]
pub struct ResolvedSink {
    pub cfg: SinkConfig,
    pub kind: SinkKind,
    pub url: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for ResolvedSink {
    // The URL may be a credential (Sumo) and the token is one: neither is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedSink")
            .field("name", &self.cfg.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl SiemConfig {
    /// The one-sink shortcut of the reference deployment guide, when the file names no sink.
    pub fn apply_env(&mut self, vars: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if !self.sinks.is_empty() {
            return Ok(());
        }
        let enabled = vars("SIEM_ENABLED").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        if !enabled {
            return Ok(());
        }
        let provider = vars("SIEM_PROVIDER").unwrap_or_default();
        let kind = SinkKind::from_provider(&provider).ok_or_else(|| ConfigError::Env {
            name: "SIEM_PROVIDER",
            message: format!(
                "{provider:?} is not splunk, datadog, elasticsearch or sumo (SIEM_ENABLED is set)"
            ),
        })?;
        let mut sink = SinkConfig::new(kind.label(), kind, "");
        sink.url = None;
        sink.url_env = Some("SIEM_ENDPOINT".to_owned());
        if vars("SIEM_API_KEY").is_some() {
            sink.token_env = Some("SIEM_API_KEY".to_owned());
        }
        self.sinks.push(sink);
        Ok(())
    }

    /// Checks every sink's shape (not its secrets: [`SiemConfig::resolve`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for s in &self.sinks {
            let bad = |why: String| ConfigError::Invalid(format!("siem sink {:?}: {why}", s.name));
            let valid_name = !s.name.is_empty()
                && s.name.len() <= 64
                && s.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return Err(bad(
                    "`name` must be 1-64 characters of letters, digits, `-` and `_`".into(),
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(bad("two sinks have this name".into()));
            }
            s.kind()?;
            if s.url.is_some() == s.url_env.is_some() {
                return Err(bad("set exactly one of `url` and `url_env`".into()));
            }
            if s.token_env.is_some() && s.token_file.is_some() {
                return Err(bad("set at most one of `token_env` and `token_file`".into()));
            }
            if let Some(url) = &s.url {
                check_url(url).map_err(|why| bad(format!("`url`: {why}")))?;
            }
            if s.batch_max_events == 0 || s.batch_max_bytes < 1024 {
                return Err(bad(
                    "need `batch_max_events` >= 1 and `batch_max_bytes` >= 1024".into(),
                ));
            }
            if s.flush_interval_ms == 0 || s.flush_interval_ms > 60_000 {
                return Err(bad("`flush_interval_ms` must be in 1..=60000".into()));
            }
            if s.retry_initial_ms == 0 || s.retry_max_ms < s.retry_initial_ms {
                return Err(bad("need 0 < `retry_initial_ms` <= `retry_max_ms`".into()));
            }
            if s.request_timeout_ms == 0 {
                return Err(bad("`request_timeout_ms` must be positive".into()));
            }
        }
        for path in &self.redact {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(ConfigError::Invalid(format!(
                    "siem.redact: {path:?} is not a dotted field path"
                )));
            }
        }
        if self.spool_max_bytes < 1 << 20 {
            return Err(ConfigError::Invalid(
                "siem.spool_max_bytes must be at least 1 MiB".into(),
            ));
        }
        Ok(())
    }

    /// Every sink with its URL and token read from the environment or files.
    pub fn resolve(
        &self,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<ResolvedSink>, ConfigError> {
        self.sinks
            .iter()
            .map(|s| {
                let kind = s.kind()?;
                let bad =
                    |why: String| ConfigError::Invalid(format!("siem sink {:?}: {why}", s.name));
                let url = match (&s.url, &s.url_env) {
                    (Some(u), _) => u.clone(),
                    (None, Some(var)) => {
                        let u = vars(var)
                            .filter(|v| !v.trim().is_empty())
                            .ok_or_else(|| bad(format!("`url_env` {var} is not set")))?;
                        // The value is not echoed: it may be a credential.
                        check_url(u.trim()).map_err(|why| bad(format!("{var}: {why}")))?;
                        u.trim().to_owned()
                    }
                    (None, None) => return Err(bad("no `url`".into())),
                };
                let token = match (&s.token_env, &s.token_file) {
                    (Some(var), _) => Some(
                        vars(var)
                            .map(|t| t.trim().to_owned())
                            .filter(|t| !t.is_empty())
                            .ok_or_else(|| bad(format!("`token_env` {var} is not set")))?,
                    ),
                    (None, Some(path)) => Some(
                        std::fs::read_to_string(path)
                            .map(|t| t.trim().to_owned())
                            .ok()
                            .filter(|t| !t.is_empty())
                            .ok_or_else(|| {
                                bad(format!(
                                    "`token_file` {} is unreadable or empty",
                                    path.display()
                                ))
                            })?,
                    ),
                    (None, None) => None,
                };
                if kind.needs_token() && token.is_none() {
                    return Err(bad(format!(
                        "kind {} needs a token (`token_env` or `token_file`)",
                        kind.label()
                    )));
                }
                Ok(ResolvedSink {
                    cfg: s.clone(),
                    kind,
                    url: url.trim_end_matches('/').to_owned(),
                    token,
                })
            })
            .collect()
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(doc: &str) -> SiemConfig {
        toml::from_str(doc).unwrap()
    }

    #[test]
    fn a_sink_is_read_with_defaults_and_its_secret_from_the_environment() {
        let cfg = parse(
            "[[sinks]]\nname = \"es-main\"\nkind = \"elasticsearch\"\nurl = \"http://127.0.0.1:9200/\"\nindex = \"flk-events\"\ntoken_env = \"FLK_ES_TOKEN\"\n",
        );
        cfg.validate().unwrap();
        let s = &cfg.sinks[0];
        assert_eq!(
            (s.batch_max_events, s.batch_max_bytes, s.flush_interval_ms),
            (500, 1 << 20, 1000)
        );
        assert_eq!(cfg.spool_max_bytes, 1 << 30);
        let err = cfg.resolve(|_| None).unwrap_err().to_string();
        assert!(
            err.contains("es-main") && err.contains("FLK_ES_TOKEN"),
            "{err}"
        );
        let r = cfg
            .resolve(|k| (k == "FLK_ES_TOKEN").then(|| "s3cret\n".to_owned()))
            .unwrap();
        assert_eq!(r[0].token.as_deref(), Some("s3cret"));
        assert_eq!(r[0].url, "http://127.0.0.1:9200");
        assert!(!format!("{r:?}").contains("s3cret"));
    }

    #[test]
    fn bad_sinks_are_startup_errors_naming_them() {
        let err = |doc: &str| parse(doc).validate().unwrap_err().to_string();
        let e = err("[[sinks]]\nname = \"x1\"\nkind = \"kafka\"\nurl = \"http://h:1\"\n");
        assert!(e.contains("x1") && e.contains("kafka"), "{e}");
        let e = err("[[sinks]]\nname = \"x2\"\nkind = \"sumo\"\nurl = \"ftp://h/\"\n");
        assert!(e.contains("x2") && e.contains("url"), "{e}");
        let e = err("[[sinks]]\nname = \"x3\"\nkind = \"sumo\"\nurl = \"not a url\"\n");
        assert!(e.contains("x3"), "{e}");
        let e = err(
            "[[sinks]]\nname = \"d\"\nkind = \"sumo\"\nurl = \"http://h\"\n[[sinks]]\nname = \"d\"\nkind = \"sumo\"\nurl = \"http://h\"\n",
        );
        assert!(e.contains("two sinks"), "{e}");
        let e =
            parse("[[sinks]]\nname = \"hec\"\nkind = \"splunk_hec\"\nurl = \"http://h:8088\"\n")
                .resolve(|_| None)
                .unwrap_err()
                .to_string();
        assert!(e.contains("hec") && e.contains("token"), "{e}");
        assert!(
            toml::from_str::<SiemConfig>(
                "[[sinks]]\nname = \"a\"\nkind = \"sumo\"\nurl = \"http://h\"\nbatch = 3\n"
            )
            .is_err()
        );
    }

    #[test]
    fn the_reference_variables_make_one_sink_when_the_file_has_none() {
        let vars = |k: &str| match k {
            "SIEM_ENABLED" => Some("true".to_owned()),
            "SIEM_PROVIDER" => Some("splunk".to_owned()),
            "SIEM_ENDPOINT" => Some("https://splunk.example:8088".to_owned()),
            "SIEM_API_KEY" => Some("hec-token".to_owned()),
            _ => None,
        };
        let mut cfg = SiemConfig::default();
        cfg.apply_env(vars).unwrap();
        cfg.validate().unwrap();
        let r = cfg.resolve(vars).unwrap();
        assert_eq!(r[0].kind, SinkKind::SplunkHec);
        assert_eq!(r[0].url, "https://splunk.example:8088");
        assert_eq!(r[0].token.as_deref(), Some("hec-token"));

        let mut off = SiemConfig::default();
        off.apply_env(|k| (k == "SIEM_PROVIDER").then(|| "splunk".to_owned()))
            .unwrap();
        assert!(off.sinks.is_empty());
        let mut bad = SiemConfig::default();
        let e = bad
            .apply_env(|k| match k {
                "SIEM_ENABLED" => Some("1".to_owned()),
                "SIEM_PROVIDER" => Some("graylog".to_owned()),
                _ => None,
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("SIEM_PROVIDER") && e.contains("graylog"), "{e}");
    }
}
