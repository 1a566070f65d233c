//! The RFC 3161 ASN.1 structures (TimeStampReq, TimeStampResp, PKIStatusInfo, TSTInfo) as
//! `der` types.
//!
//! They are defined here rather than taken from `x509-tsp` because that crate decodes `genTime`
//! as a DER `GeneralizedTime` without fractional seconds, which many production TSAs emit
//! (RFC 3161 section 2.4.2 allows them); here `genTime` is kept raw and parsed by
//! [`parse_generalized_time`].

use der::asn1::{BitString, ObjectIdentifier, OctetString, Uint, Utf8StringRef};
use der::{Any, Sequence, Tag, Tagged};
use spki::AlgorithmIdentifierOwned;
use time::OffsetDateTime;
use x509_cert::ext::Extensions;
use x509_cert::ext::pkix::name::GeneralName;

/// `MessageImprint ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, hashedMessage OCTET STRING }`
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct MessageImprint {
    pub hash_algorithm: AlgorithmIdentifierOwned,
    pub hashed_message: OctetString,
}

/// `TimeStampReq` (RFC 3161 section 2.4.1).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TimeStampReq {
    pub version: u8,
    pub message_imprint: MessageImprint,
    #[asn1(optional = "true")]
    pub req_policy: Option<ObjectIdentifier>,
    #[asn1(optional = "true")]
    pub nonce: Option<Uint>,
    #[asn1(default = "Default::default")]
    pub cert_req: bool,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub extensions: Option<Extensions>,
}

/// `PKIStatusInfo ::= SEQUENCE { status PKIStatus, statusString PKIFreeText OPTIONAL,
/// failInfo PKIFailureInfo OPTIONAL }`
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct PkiStatusInfo<'a> {
    pub status: u32,
    #[asn1(optional = "true")]
    pub status_string: Option<Vec<Utf8StringRef<'a>>>,
    #[asn1(optional = "true")]
    pub fail_info: Option<BitString>,
}

/// `TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken TimeStampToken OPTIONAL }`
/// The token is kept as raw DER (a CMS `ContentInfo`) so that exactly the received bytes are
/// stored.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TimeStampResp<'a> {
    pub status: PkiStatusInfo<'a>,
    #[asn1(optional = "true")]
    pub time_stamp_token: Option<Any>,
}

/// `Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL, millis [0] INTEGER (1..999) OPTIONAL,
/// micros [1] INTEGER (1..999) OPTIONAL }`
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct Accuracy {
    #[asn1(optional = "true")]
    pub seconds: Option<u64>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub millis: Option<u16>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub micros: Option<u16>,
}

/// `TSTInfo` (RFC 3161 section 2.4.2); `genTime` is kept raw (see the module docs).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TstInfo {
    pub version: u8,
    pub policy: ObjectIdentifier,
    pub message_imprint: MessageImprint,
    pub serial_number: der::asn1::Int,
    pub gen_time: Any,
    #[asn1(optional = "true")]
    pub accuracy: Option<Accuracy>,
    #[asn1(default = "Default::default")]
    pub ordering: bool,
    #[asn1(optional = "true")]
    pub nonce: Option<der::asn1::Int>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub tsa: Option<GeneralName>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub extensions: Option<Extensions>,
}

/// `ESSCertIDv2 ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier DEFAULT {id-sha256},
/// certHash OCTET STRING, issuerSerial IssuerSerial OPTIONAL }` (RFC 5035)
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EssCertIdV2 {
    #[asn1(optional = "true")]
    pub hash_algorithm: Option<AlgorithmIdentifierOwned>,
    pub cert_hash: OctetString,
    #[asn1(optional = "true")]
    pub issuer_serial: Option<Any>,
}

/// `SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2, policies SEQUENCE OF
/// PolicyInformation OPTIONAL }` (RFC 5035)
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SigningCertificateV2 {
    pub certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    pub policies: Option<Any>,
}

/// `ESSCertID ::= SEQUENCE { certHash OCTET STRING (SHA-1), issuerSerial IssuerSerial OPTIONAL }`
/// (RFC 2634)
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EssCertId {
    pub cert_hash: OctetString,
    #[asn1(optional = "true")]
    pub issuer_serial: Option<Any>,
}

/// `SigningCertificate ::= SEQUENCE { certs SEQUENCE OF ESSCertID, policies ... OPTIONAL }`
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SigningCertificate {
    pub certs: Vec<EssCertId>,
    #[asn1(optional = "true")]
    pub policies: Option<Any>,
}

/// Parses a DER/BER `GeneralizedTime` in the form RFC 3161 requires: `YYYYMMDDhhmmss[.f+]Z`
/// (UTC, optional fractional seconds). Returns `None` for anything else.
pub fn parse_generalized_time(value: &Any) -> Option<OffsetDateTime> {
    if value.tag() != Tag::GeneralizedTime {
        return None;
    }
    let s = std::str::from_utf8(value.value()).ok()?;
    let s = s.strip_suffix('Z')?;
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| whole[r].parse::<u32>().ok();
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(num(6..8)?).ok()?).ok()?;
    let hms = time::Time::from_hms(
        u8::try_from(num(8..10)?).ok()?,
        u8::try_from(num(10..12)?).ok()?,
        u8::try_from(num(12..14)?).ok()?,
    )
    .ok()?;
    let mut t = time::PrimitiveDateTime::new(date, hms).assume_utc();
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Nanosecond resolution; further digits are dropped.
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        let nanos: u32 = digits.parse().ok()?;
        t = t.replace_nanosecond(nanos).ok()?;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt(s: &str) -> Any {
        Any::new(Tag::GeneralizedTime, s.as_bytes()).unwrap()
    }

    #[test]
    fn generalized_time_with_and_without_fraction() {
        let t = parse_generalized_time(&gt("20240229235959Z")).unwrap();
        assert_eq!(t.unix_timestamp(), 1_709_251_199);
        let t = parse_generalized_time(&gt("20240229235959.125Z")).unwrap();
        assert_eq!(t.nanosecond(), 125_000_000);
        for bad in [
            "20240230000000Z",
            "2024022923595Z",
            "20240229235959",
            "20240229235959.Z",
            "20240229235959+0100",
        ] {
            assert!(parse_generalized_time(&gt(bad)).is_none(), "{bad}");
        }
        let utc = Any::new(Tag::UtcTime, b"240229235959Z".as_slice()).unwrap();
        assert!(parse_generalized_time(&utc).is_none());
    }
}
