//! RFC 3161 time-stamping: request building, the HTTP client, response and token
//! verification, and the stored [`Rfc3161Anchor`].
//!
//! The request is a DER `TimeStampReq` v1 with a SHA-256 `messageImprint` of the anchored digest
//! (the digest itself is the "hashed message": the TSA signs over it, it never sees the
//! checkpoint), a random 64-bit nonce and `certReq = TRUE`, so the token carries the TSA
//! certificate and can be verified from its own bytes plus a trust-anchor CA certificate. It is
//! POSTed as `application/timestamp-query` (RFC 3161 section 3.4); the reply must be
//! `application/timestamp-reply`, at most [`MAX_RESPONSE_BYTES`].
//!
//! [`verify_response`] checks the PKIStatus (granted or grantedWithMods), then the token
//! ([`verify_token`]: CMS signature, signed attributes, certificate usage and chain, validity at
//! genTime, imprint) and finally that the TSTInfo nonce is ours. Only the token's DER is stored;
//! [`Rfc3161Anchor::reverify`] repeats every check except the nonce offline.

mod asn1;
mod verify;

use std::time::Duration;

use const_oid::db::rfc5912::ID_SHA_256;
use der::asn1::{OctetString, Uint};
use der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

pub use verify::{VerifiedToken, verify_token};

/// The largest TSA reply read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// The default bound on one time-stamp request, connect to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why time-stamping or a token's verification failed. Each verification failure names the
/// check.
#[derive(Debug, thiserror::Error)]
pub enum Rfc3161Error {
    /// The TSA could not be reached or the transfer failed.
    #[error("tsa transport: {0}")]
    Transport(String),
    /// The TSA answered with a non-200 HTTP status.
    #[error("tsa http status {0}")]
    HttpStatus(u16),
    /// The reply's content type is not `application/timestamp-reply`.
    #[error("tsa reply content type {0:?} is not application/timestamp-reply")]
    ContentType(String),
    /// The reply is larger than [`MAX_RESPONSE_BYTES`].
    #[error("tsa reply exceeds {MAX_RESPONSE_BYTES} bytes")]
    ResponseTooLarge,
    /// The TimeStampResp is not valid DER of the expected shape.
    #[error("malformed TimeStampResp: {0}")]
    MalformedResponse(String),
    /// The TSA did not grant the request (PKIStatus other than 0 or 1).
    #[error("tsa refused the request: status {status}, {text:?}, failInfo bits {fail_info:?}")]
    NotGranted {
        /// PKIStatus (2 rejection, 3 waiting, 4 revocationWarning, 5 revocationNotification).
        status: u32,
        /// The statusString texts.
        text: Vec<String>,
        /// The indexes of the PKIFailureInfo bits set.
        fail_info: Vec<usize>,
    },
    /// The status is granted but no token was returned.
    #[error("granted response without a time-stamp token")]
    MissingToken,
    /// A part of the token is not valid DER of the expected shape.
    #[error("malformed token ({what}): {detail}")]
    MalformedToken {
        /// The structure that failed.
        what: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// The token's ContentInfo is not `id-signedData`.
    #[error("token content type {0} is not signedData")]
    NotSignedData(String),
    /// The encapsulated content type (or the content-type attribute) is not `id-ct-TSTInfo`.
    #[error("encapsulated content type is not id-ct-TSTInfo: {0}")]
    NotTstInfo(String),
    /// The SignerInfo has no signed attributes.
    #[error("signer info has no signed attributes")]
    MissingSignedAttributes,
    /// The messageDigest attribute is not SHA-256 of the encapsulated TSTInfo.
    #[error("messageDigest attribute does not match the TSTInfo")]
    MessageDigestMismatch,
    /// A digest or signature algorithm other than SHA-256 / RSA PKCS#1 v1.5 / ECDSA P-256.
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// A certificate's public key could not be used.
    #[error("unusable public key: {0}")]
    BadPublicKey(String),
    /// A signature did not verify.
    #[error("invalid {0}")]
    BadSignature(&'static str),
    /// The signed attributes lack a SigningCertificate or SigningCertificateV2 attribute.
    #[error("signed attributes have no signing-certificate attribute")]
    MissingSigningCertificate,
    /// The signing-certificate attribute does not identify the signer certificate.
    #[error("signing-certificate attribute does not match the signer certificate")]
    SigningCertificateMismatch,
    /// The certificate named by the SignerInfo is not in the token.
    #[error("signer certificate not found in the token")]
    SignerCertificateMissing,
    /// The signer certificate is not a time-stamping certificate (RFC 3161 section 2.3).
    #[error("signer certificate is not for time stamping: {0}")]
    NotTimeStampingCertificate(&'static str),
    /// The signer certificate does not chain to a configured trust anchor.
    #[error("tsa certificate issued by {issuer:?} is not trusted: {reason}")]
    UntrustedSigner {
        /// The TSA certificate's issuer name.
        issuer: String,
        /// Why no trust anchor fits.
        reason: &'static str,
    },
    /// A certificate's validity period does not contain genTime.
    #[error("{0} is not valid at genTime")]
    CertificateNotValidAtGenTime(&'static str),
    /// The TSTInfo messageImprint is not SHA-256 with our digest.
    #[error("token messageImprint does not match the anchored digest")]
    ImprintMismatch,
    /// The token has no nonce, or not ours (e.g. a replayed older reply).
    #[error("token nonce does not match the request nonce")]
    NonceMismatch,
    /// A trust-anchor certificate could not be parsed.
    #[error("trust anchor certificate: {0}")]
    BadTrustAnchor(String),
    /// The request could not be DER-encoded.
    #[error("encoding the request: {0}")]
    Encode(String),
    /// The configured TSA URL is invalid.
    #[error("invalid tsa url: {0}")]
    BadUrl(String),
}

/// The CA certificates a TSA certificate must be issued by (directly).
#[derive(Debug, Clone)]
pub struct TsaTrust {
    anchors: Vec<Certificate>,
}

impl TsaTrust {
    /// Trust anchors from DER certificates.
    pub fn from_der_certs<'a>(
        certs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<TsaTrust, Rfc3161Error> {
        let anchors = certs
            .into_iter()
            .map(|c| {
                Certificate::from_der(c).map_err(|e| Rfc3161Error::BadTrustAnchor(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TsaTrust { anchors })
    }

    /// Trust anchors from one or more PEM `CERTIFICATE` blocks.
    pub fn from_pem(pem: &[u8]) -> Result<TsaTrust, Rfc3161Error> {
        // x509-cert 0.2's `load_pem_chain` computes `len - 1` after stripping trailing line
        // breaks, which overflows (a panic with overflow checks) on a file holding nothing
        // else: refuse such a file first (found by the `tsa` fuzz target).
        if pem.iter().all(u8::is_ascii_whitespace) {
            return Err(Rfc3161Error::BadTrustAnchor("no certificate in PEM".into()));
        }
        let anchors = Certificate::load_pem_chain(pem)
            .map_err(|e| Rfc3161Error::BadTrustAnchor(e.to_string()))?;
        if anchors.is_empty() {
            return Err(Rfc3161Error::BadTrustAnchor("no certificate in PEM".into()));
        }
        Ok(TsaTrust { anchors })
    }

    fn anchors(&self) -> &[Certificate] {
        &self.anchors
    }
}

/// A granted, verified time-stamp over an anchored digest, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rfc3161Anchor {
    /// The DER TimeStampToken (CMS ContentInfo) exactly as received: the proof.
    #[serde(with = "crate::serde_b64")]
    pub token: Vec<u8>,
    /// The TSA's genTime, as Unix seconds.
    pub gen_time_unix: i64,
    /// The genTime in RFC 3339, for people.
    pub gen_time: String,
    /// The token serial number, lowercase hex.
    pub serial_hex: String,
    /// The TSA name (TSTInfo `tsa`, else the signer certificate subject).
    pub tsa_name: String,
    /// The TSA policy OID.
    pub policy: String,
}

impl Rfc3161Anchor {
    fn from_verified(token: Vec<u8>, v: &VerifiedToken) -> Rfc3161Anchor {
        Rfc3161Anchor {
            token,
            gen_time_unix: v.gen_time.unix_timestamp(),
            gen_time: v
                .gen_time
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            serial_hex: v.serial_hex.clone(),
            tsa_name: v.tsa_name.clone(),
            policy: v.policy.clone(),
        }
    }

    /// Rebuilds the anchor from stored token bytes, verifying them ([`verify_token`]).
    pub fn from_token(
        token: Vec<u8>,
        digest: &[u8; 32],
        trust: &TsaTrust,
    ) -> Result<Rfc3161Anchor, Rfc3161Error> {
        let v = verify_token(&token, digest, trust)?;
        Ok(Rfc3161Anchor::from_verified(token, &v))
    }

    /// Re-verifies the stored token offline for `digest` and checks that the stored metadata is
    /// what the token says.
    pub fn reverify(
        &self,
        digest: &[u8; 32],
        trust: &TsaTrust,
    ) -> Result<VerifiedToken, Rfc3161Error> {
        let v = verify_token(&self.token, digest, trust)?;
        if Rfc3161Anchor::from_verified(self.token.clone(), &v) != *self {
            return Err(Rfc3161Error::MalformedToken {
                what: "stored anchor",
                detail: "stored metadata differs from the token".into(),
            });
        }
        Ok(v)
    }
}

/// A DER TimeStampReq v1 for `digest` (SHA-256 imprint), with `nonce` and `certReq = TRUE`.
pub fn build_request(digest: &[u8; 32], nonce: u64) -> Result<Vec<u8>, Rfc3161Error> {
    let enc = |e: der::Error| Rfc3161Error::Encode(e.to_string());
    let req = asn1::TimeStampReq {
        version: 1,
        message_imprint: asn1::MessageImprint {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: ID_SHA_256,
                parameters: None,
            },
            hashed_message: OctetString::new(digest.to_vec()).map_err(enc)?,
        },
        req_policy: None,
        nonce: Some(Uint::new(&nonce.to_be_bytes()).map_err(enc)?),
        cert_req: true,
        extensions: None,
    };
    req.to_der().map_err(enc)
}

/// Parses a DER TimeStampResp and verifies it for `digest` and the request's `nonce`; returns
/// the anchor to store.
pub fn verify_response(
    response: &[u8],
    digest: &[u8; 32],
    nonce: u64,
    trust: &TsaTrust,
) -> Result<Rfc3161Anchor, Rfc3161Error> {
    let resp = asn1::TimeStampResp::from_der(response)
        .map_err(|e| Rfc3161Error::MalformedResponse(e.to_string()))?;
    let status = resp.status.status;
    if status > 1 {
        let fail_info = resp
            .status
            .fail_info
            .as_ref()
            .map(|bits| {
                bits.bits()
                    .enumerate()
                    .filter_map(|(i, set)| set.then_some(i))
                    .collect()
            })
            .unwrap_or_default();
        return Err(Rfc3161Error::NotGranted {
            status,
            text: resp
                .status
                .status_string
                .iter()
                .flatten()
                .map(|s| s.as_str().to_owned())
                .collect(),
            fail_info,
        });
    }
    let token = resp
        .time_stamp_token
        .ok_or(Rfc3161Error::MissingToken)?
        .to_der()
        .map_err(|e| Rfc3161Error::MalformedResponse(e.to_string()))?;
    let v = verify_token(&token, digest, trust)?;
    let ours = nonce.to_be_bytes();
    if v.nonce.as_deref() != Some(verify::minimal(&ours)) {
        return Err(Rfc3161Error::NonceMismatch);
    }
    Ok(Rfc3161Anchor::from_verified(token, &v))
}

/// An RFC 3161 TSA client: one URL, its trust anchors, a request timeout.
#[derive(Debug, Clone)]
pub struct Rfc3161Client {
    http: reqwest::Client,
    url: reqwest::Url,
    trust: TsaTrust,
}

impl Rfc3161Client {
    /// A client for the TSA at `url` (http or https), trusting `trust`, with `timeout` per
    /// request.
    pub fn new(url: &str, trust: TsaTrust, timeout: Duration) -> Result<Self, Rfc3161Error> {
        let url = reqwest::Url::parse(url).map_err(|e| Rfc3161Error::BadUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Rfc3161Error::BadUrl(format!("scheme {}", url.scheme())));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Rfc3161Error::Transport(e.to_string()))?;
        Ok(Rfc3161Client { http, url, trust })
    }

    /// The trust anchors this client verifies against.
    pub fn trust(&self) -> &TsaTrust {
        &self.trust
    }

    /// Time-stamps `digest`: sends a fresh request and returns the verified anchor.
    pub async fn timestamp(&self, digest: &[u8; 32]) -> Result<Rfc3161Anchor, Rfc3161Error> {
        let nonce: u64 = rand::random();
        let request = build_request(digest, nonce)?;
        let reply = self.post(request).await?;
        verify_response(&reply, digest, nonce, &self.trust)
    }

    /// [`Rfc3161Client::timestamp`] for synchronous callers: runs it on a fresh runtime in a
    /// helper thread and blocks until it is done; from async code prefer the async method.
    pub fn timestamp_blocking(&self, digest: &[u8; 32]) -> Result<Rfc3161Anchor, Rfc3161Error> {
        crate::block_on(self.timestamp(digest)).map_err(Rfc3161Error::Transport)?
    }

    async fn post(&self, body: Vec<u8>) -> Result<Vec<u8>, Rfc3161Error> {
        let transport = |e: reqwest::Error| Rfc3161Error::Transport(e.to_string());
        let mut resp = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/timestamp-query")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(Rfc3161Error::HttpStatus(resp.status().as_u16()));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/timestamp-reply") {
            return Err(Rfc3161Error::ContentType(content_type));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(Rfc3161Error::ResponseTooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Rfc3161Error::ResponseTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fuzz target `tsa`): an empty trust-anchor PEM, or one of line breaks only,
    /// overflowed inside x509-cert instead of being refused.
    #[test]
    fn empty_trust_anchor_pem_is_refused() {
        for pem in [&b""[..], b"\n", b"\r\n\r\n", b" \t\n"] {
            assert!(
                matches!(
                    TsaTrust::from_pem(pem),
                    Err(Rfc3161Error::BadTrustAnchor(_))
                ),
                "{pem:?}"
            );
        }
    }

    #[test]
    fn request_is_the_documented_der() {
        let digest = [0xab; 32];
        let der = build_request(&digest, 0x8000_0000_0000_0001).unwrap();
        // SEQUENCE { version 1, MessageImprint { sha256 (parameters absent, RFC 5754),
        // OCTET STRING digest }, nonce, certReq TRUE }
        let expected = format!(
            "3042020101302f300b0609608648016503040201\
             0420{}0209008000000000000001\
             0101ff",
            "ab".repeat(32)
        );
        assert_eq!(hex::encode(&der), expected);
        let req = asn1::TimeStampReq::from_der(&der).unwrap();
        assert_eq!(req.version, 1);
        assert_eq!(req.message_imprint.hash_algorithm.oid, ID_SHA_256);
        assert_eq!(req.message_imprint.hashed_message.as_bytes(), digest);
        assert!(req.cert_req);
        // High bit set: the positive INTEGER needs a leading zero byte.
        assert_eq!(
            req.nonce.unwrap().to_der().unwrap(),
            hex::decode("0209008000000000000001").unwrap()
        );
    }

    #[test]
    fn garbage_responses_are_errors() {
        let trust = TsaTrust { anchors: vec![] };
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x03\x02\x01",
            b"\x30\x80\x00\x00",
            &[0xff; 64],
        ] {
            assert!(matches!(
                verify_response(bytes, &[0; 32], 1, &trust),
                Err(Rfc3161Error::MalformedResponse(_))
            ));
            assert!(matches!(
                verify_token(bytes, &[0; 32], &trust),
                Err(Rfc3161Error::MalformedToken { .. })
            ));
        }
    }
}
