//! Replication policies per tenant: which peer regions a tenant's decisions go to, and in
//! which order backlogs ship. Pure; the run-time set is replaced as a whole (admin API).
//!
//! A policy names its tenants by id (`tenant`), or by `include` patterns (`*` matches any run
//! of characters) minus `exclude` patterns, optionally narrowed by a label `selector` matched
//! against `[labels.<tenant>]`. A policy naming the tenant by id wins over patterns; among
//! pattern policies the first listed wins; a tenant no policy names gets `default_mode`.
//!
//! Modes: `full` ships to every peer; `selective` to the listed `targets`; `multi_way` to
//! the other regions of the group listed in `targets` (each region of the group ships its own
//! writes to every other, so a write accepted anywhere reaches all); `none` ships nothing.
//! Only decisions this region made are shipped: a replicated record is never forwarded, so a
//! record travels one hop from its origin and cannot loop.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a tenant's decisions replicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Full,
    Selective,
    MultiWay,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Selective => "selective",
            Mode::MultiWay => "multi_way",
            Mode::None => "none",
        }
    }
}

/// One `[[policies]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    pub mode: Mode,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default = "default_priority")]
    pub priority: u8,
}

fn default_priority() -> u8 {
    5
}

impl PolicySpec {
    /// Checks the entry; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10).contains(&self.priority) {
            return Err(format!("`priority` must be 1-10, got {}", self.priority));
        }
        if self.tenant.is_none() && self.include.is_empty() {
            return Err("name the tenants: `tenant` or `include`".to_owned());
        }
        if self.tenant.is_some() && !self.include.is_empty() {
            return Err("`tenant` and `include` exclude each other".to_owned());
        }
        match self.mode {
            Mode::Selective | Mode::MultiWay if self.targets.is_empty() => {
                Err(format!("mode `{}` needs `targets`", self.mode.as_str()))
            }
            Mode::Full | Mode::None if !self.targets.is_empty() => {
                Err(format!("mode `{}` takes no `targets`", self.mode.as_str()))
            }
            _ => Ok(()),
        }
    }

    fn names(&self, tenant: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        let named = match &self.tenant {
            Some(t) => t == tenant,
            None => {
                self.include.iter().any(|p| glob(p, tenant))
                    && !self.exclude.iter().any(|p| glob(p, tenant))
            }
        };
        named
            && self
                .selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }
}

/// `*` matches any run of characters, everything else itself. Written here because tenant
/// patterns need nothing more, and a glob crate would bring path semantics (`/`, `**`) that
/// do not apply to tenant ids.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    if !text.ends_with(last) {
        return false;
    }
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// What a tenant's decisions do here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub mode: Mode,
    /// Peer regions its decisions ship to (configured peers only).
    pub targets: Vec<String>,
    pub priority: u8,
}

/// The policies in force.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    pub region: String,
    pub peers: Vec<String>,
    pub default_mode: Mode,
    pub specs: Vec<PolicySpec>,
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl PolicySet {
    /// The policy of `tenant`.
    pub fn resolve(&self, tenant: &str) -> Resolved {
        let labels = self.labels.get(tenant);
        let spec = self
            .specs
            .iter()
            .find(|s| s.tenant.as_deref() == Some(tenant) && s.names(tenant, labels))
            .or_else(|| {
                self.specs
                    .iter()
                    .find(|s| s.tenant.is_none() && s.names(tenant, labels))
            });
        let (mode, listed, priority) = match spec {
            Some(s) => (s.mode, s.targets.as_slice(), s.priority),
            None => (self.default_mode, &[][..], default_priority()),
        };
        let targets = match mode {
            Mode::None => Vec::new(),
            Mode::Full => self.peers.clone(),
            Mode::Selective | Mode::MultiWay => self
                .peers
                .iter()
                .filter(|p| listed.contains(p))
                .cloned()
                .collect(),
        };
        Resolved {
            mode,
            targets,
            priority,
        }
    }

    /// Whether a decision of `tenant` made in `origin` belongs in `region`: its origin, or a
    /// region the policy sends it to from there (every region runs the same policies: the
    /// configuration is shared, as the tenants file is).
    pub fn expected_in(&self, tenant: &str, origin: &str, region: &str) -> bool {
        if origin == region {
            return true;
        }
        let from_origin = PolicySet {
            region: origin.to_owned(),
            peers: std::iter::once(self.region.clone())
                .chain(self.peers.iter().cloned())
                .filter(|r| r != origin)
                .collect(),
            default_mode: self.default_mode,
            specs: self.specs.clone(),
            labels: self.labels.clone(),
        };
        from_origin
            .resolve(tenant)
            .targets
            .iter()
            .any(|t| t == region)
    }

    /// Whether a decision of `tenant` made in `origin` ships from this region to `target`.
    pub fn ships(&self, tenant: &str, origin: &str, target: &str) -> bool {
        origin == self.region && self.resolve(tenant).targets.iter().any(|t| t == target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tenant: &str, mode: Mode, targets: &[&str]) -> PolicySpec {
        PolicySpec {
            tenant: Some(tenant.into()),
            include: vec![],
            exclude: vec![],
            selector: BTreeMap::new(),
            mode,
            targets: targets.iter().map(|s| s.to_string()).collect(),
            priority: 5,
        }
    }

    fn set(specs: Vec<PolicySpec>) -> PolicySet {
        PolicySet {
            region: "eu".into(),
            peers: vec!["us".into(), "ap".into()],
            default_mode: Mode::None,
            specs,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn modes_pick_their_targets() {
        let s = set(vec![
            spec("a", Mode::Full, &[]),
            spec("b", Mode::Selective, &["us"]),
            spec("c", Mode::MultiWay, &["ap", "eu", "nowhere"]),
            spec("d", Mode::None, &[]),
        ]);
        assert_eq!(s.resolve("a").targets, ["us", "ap"]);
        assert_eq!(s.resolve("b").targets, ["us"]);
        assert_eq!(s.resolve("c").targets, ["ap"]);
        assert!(s.resolve("d").targets.is_empty());
        assert!(s.resolve("unknown").targets.is_empty());
        assert!(s.ships("b", "eu", "us"));
        assert!(!s.ships("b", "eu", "ap"));
        // Replicated records are never forwarded.
        assert!(!s.ships("a", "us", "ap"));
    }

    #[test]
    fn patterns_labels_and_precedence() {
        let mut by_pattern = spec("x", Mode::Full, &[]);
        by_pattern.tenant = None;
        by_pattern.include = vec!["team-*".into()];
        by_pattern.exclude = vec!["team-test*".into()];
        by_pattern.selector = BTreeMap::from([("tier".into(), "gold".into())]);
        let mut s = set(vec![by_pattern, spec("team-b", Mode::Selective, &["ap"])]);
        s.labels.insert(
            "team-a".into(),
            BTreeMap::from([("tier".into(), "gold".into())]),
        );
        s.labels.insert(
            "team-test1".into(),
            BTreeMap::from([("tier".into(), "gold".into())]),
        );
        assert_eq!(s.resolve("team-a").mode, Mode::Full);
        assert_eq!(s.resolve("team-test1").mode, Mode::None, "excluded");
        assert_eq!(s.resolve("team-c").mode, Mode::None, "no gold label");
        assert_eq!(s.resolve("team-b").targets, ["ap"], "by id wins");
    }

    #[test]
    fn glob_matches() {
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(glob("a*b*c", "a-b-c"));
        assert!(!glob("a*b*c", "a-c"));
        assert!(glob("*", ""));
        assert!(!glob("ab*ba", "aba"));
        assert!(glob("abc", "abc"));
        assert!(!glob("abc", "abcd"));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut p = spec("a", Mode::Selective, &[]);
        assert!(p.validate().unwrap_err().contains("targets"));
        p.targets = vec!["us".into()];
        p.priority = 0;
        assert!(p.validate().unwrap_err().contains("priority"));
    }
}
