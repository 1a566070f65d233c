//! OpenTimestamps: the calendar client, the stored [`OtsAnchor`] (a `.ots` file) and its
//! verification.
//!
//! Stamping POSTs the 32-byte anchored digest to `<calendar>/digest` on every configured
//! calendar; each answers with a serialized timestamp on the digest (typically: append a
//! nonce, SHA-256, a pending attestation naming the calendar), and the answers are merged into
//! one `.ots` file. Upgrading asks, for each pending attestation whose URI is a configured
//! calendar (a proof never makes the client contact other hosts), `GET
//! <calendar>/timestamp/<hex of the attested message>`: 404 means still pending, 200 a
//! timestamp on that message that is merged in (usually ending in a Bitcoin block header
//! attestation).
//!
//! [`OtsAnchor::verify`] parses the file strictly, checks that its file digest is the anchored
//! digest and evaluates the commitment chain to every attestation. A Bitcoin attestation means
//! "the computed message is the Merkle root of block `height`": checking that against the
//! block header needs a Bitcoin header source, which this crate does not have; the caller gets
//! `(height, merkle root)` to compare.

pub mod format;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use format::{Attestation, DetachedTimestampFile, Op, OtsFormatError, Timestamp};

/// The largest calendar answer read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why stamping, upgrading or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum OtsError {
    /// A calendar URL is invalid, or none is configured.
    #[error("invalid calendar url: {0}")]
    BadUrl(String),
    /// Every calendar failed; each failure is listed.
    #[error("no calendar accepted the digest: {0:?}")]
    AllCalendarsFailed(Vec<String>),
    /// A calendar could not be reached.
    #[error("calendar transport: {0}")]
    Transport(String),
    /// A calendar answered with an unexpected HTTP status.
    #[error("calendar http status {0}")]
    HttpStatus(u16),
    /// A calendar answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("calendar answer exceeds {MAX_RESPONSE_BYTES} bytes")]
    ResponseTooLarge,
    /// A proof or calendar answer is malformed.
    #[error("proof format: {0}")]
    Format(#[from] OtsFormatError),
    /// The proof's file digest is not the anchored digest.
    #[error("proof is for another digest")]
    DigestMismatch,
}

/// A Bitcoin block header attestation reached from the anchored digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitcoinAttestation {
    /// The block height.
    pub height: u64,
    /// The message the commitment chain yields: must equal the block's Merkle root (in the
    /// header's internal byte order), hex.
    pub merkle_root_hex: String,
}

/// What a verified `.ots` proof attests.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OtsVerified {
    /// Calendars still to be asked for an upgrade.
    pub pending: Vec<String>,
    /// Bitcoin attestations, to be checked against block headers.
    pub bitcoin: Vec<BitcoinAttestation>,
}

/// A stored OpenTimestamps anchor: the `.ots` file bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtsAnchor {
    /// The detached timestamp file, exactly as written by [`DetachedTimestampFile::serialize`].
    #[serde(with = "crate::serde_b64")]
    pub ots: Vec<u8>,
}

impl OtsAnchor {
    /// Parses the stored file.
    pub fn file(&self) -> Result<DetachedTimestampFile, OtsError> {
        Ok(DetachedTimestampFile::deserialize(&self.ots)?)
    }

    /// Verifies the proof for `digest` (see the module docs).
    pub fn verify(&self, digest: &[u8; 32]) -> Result<OtsVerified, OtsError> {
        let file = self.file()?;
        if file.digest() != digest {
            return Err(OtsError::DigestMismatch);
        }
        let mut out = OtsVerified::default();
        for (msg, att) in file.timestamp.all_attestations() {
            match att {
                Attestation::Pending { uri } => out.pending.push(uri),
                Attestation::Bitcoin { height } => out.bitcoin.push(BitcoinAttestation {
                    height,
                    merkle_root_hex: hex::encode(msg),
                }),
                Attestation::Unknown { .. } => {}
            }
        }
        Ok(out)
    }

    /// Whether a Bitcoin attestation is present.
    pub fn is_complete(&self, digest: &[u8; 32]) -> Result<bool, OtsError> {
        Ok(!self.verify(digest)?.bitcoin.is_empty())
    }
}

/// What an upgrade did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpgradeOutcome {
    /// Pending attestations whose calendar returned a timestamp that was merged.
    pub upgraded: usize,
    /// Pending attestations still pending (404).
    pub still_pending: usize,
    /// Pending attestations naming a calendar that is not configured (not contacted).
    pub skipped: usize,
}

/// A client for a set of OpenTimestamps calendars.
#[derive(Debug, Clone)]
pub struct OtsClient {
    http: reqwest::Client,
    calendars: Vec<reqwest::Url>,
}

fn trim(url: &str) -> &str {
    url.trim_end_matches('/')
}

impl OtsClient {
    /// A client for `calendars` (http or https base URLs), with `timeout` per request.
    pub fn new(calendars: &[&str], timeout: Duration) -> Result<OtsClient, OtsError> {
        if calendars.is_empty() {
            return Err(OtsError::BadUrl("no calendar configured".into()));
        }
        let calendars = calendars
            .iter()
            .map(|c| {
                let url =
                    reqwest::Url::parse(trim(c)).map_err(|e| OtsError::BadUrl(e.to_string()))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(OtsError::BadUrl(format!("scheme {}", url.scheme())));
                }
                Ok(url)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| OtsError::Transport(e.to_string()))?;
        Ok(OtsClient { http, calendars })
    }

    /// Submits `digest` to every calendar and returns the merged pending proof. Fails only if
    /// no calendar answers with a valid timestamp.
    pub async fn stamp(&self, digest: &[u8; 32]) -> Result<OtsAnchor, OtsError> {
        let mut timestamp = Timestamp::new(digest.to_vec());
        let mut failures = Vec::new();
        for cal in &self.calendars {
            let url = format!("{}/digest", trim(cal.as_str()));
            let answer = self
                .fetch(self.http.post(&url).body(digest.to_vec()))
                .await
                .and_then(|body| {
                    body.ok_or(OtsError::HttpStatus(404))
                        .and_then(|b| Ok(Timestamp::deserialize(&b, digest.to_vec())?))
                });
            match answer.and_then(|t| Ok(timestamp.merge(t)?)) {
                Ok(()) => {}
                Err(e) => failures.push(format!("{url}: {e}")),
            }
        }
        if failures.len() == self.calendars.len() {
            return Err(OtsError::AllCalendarsFailed(failures));
        }
        let file = DetachedTimestampFile { timestamp };
        Ok(OtsAnchor {
            ots: file.serialize()?,
        })
    }

    /// Asks the calendars of the pending attestations for upgrades and merges them into
    /// `anchor`. A calendar that fails leaves its attestation pending and the error is
    /// returned only if nothing could be asked at all.
    pub async fn upgrade(&self, anchor: &mut OtsAnchor) -> Result<UpgradeOutcome, OtsError> {
        let mut file = anchor.file()?;
        let mut outcome = UpgradeOutcome::default();
        let mut last_error = None;
        for (msg, att) in file.timestamp.all_attestations() {
            let Attestation::Pending { uri } = att else {
                continue;
            };
            if !self
                .calendars
                .iter()
                .any(|c| trim(c.as_str()) == trim(&uri))
            {
                outcome.skipped += 1;
                continue;
            }
            let url = format!("{}/timestamp/{}", trim(&uri), hex::encode(&msg));
            match self.fetch(self.http.get(&url)).await {
                Ok(Some(body)) => {
                    let upgraded = Timestamp::deserialize(&body, msg.clone())?;
                    if let Some(node) = file.timestamp.find_mut(&msg) {
                        node.merge(upgraded)?;
                        outcome.upgraded += 1;
                    }
                }
                Ok(None) => outcome.still_pending += 1,
                Err(e) => {
                    outcome.still_pending += 1;
                    last_error = Some(e);
                }
            }
        }
        if let Some(e) = last_error.filter(|_| outcome.upgraded == 0) {
            return Err(e);
        }
        anchor.ots = file.serialize()?;
        Ok(outcome)
    }

    /// [`OtsClient::stamp`] for synchronous callers: runs it on a private runtime in a helper
    /// thread and blocks until it is done.
    pub fn stamp_blocking(&self, digest: &[u8; 32]) -> Result<OtsAnchor, OtsError> {
        crate::block_on(self.stamp(digest)).map_err(OtsError::Transport)?
    }

    /// [`OtsClient::upgrade`] for synchronous callers.
    pub fn upgrade_blocking(&self, anchor: &mut OtsAnchor) -> Result<UpgradeOutcome, OtsError> {
        crate::block_on(self.upgrade(anchor)).map_err(OtsError::Transport)?
    }

    /// Sends a request; `Ok(None)` on 404.
    async fn fetch(&self, req: reqwest::RequestBuilder) -> Result<Option<Vec<u8>>, OtsError> {
        let transport = |e: reqwest::Error| OtsError::Transport(e.to_string());
        let mut resp = req
            .header(reqwest::header::ACCEPT, "application/vnd.opentimestamps.v1")
            .send()
            .await
            .map_err(transport)?;
        match resp.status() {
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::NOT_FOUND => return Ok(None),
            other => return Err(OtsError::HttpStatus(other.as_u16())),
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(OtsError::ResponseTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}
