//! Full verification of an RFC 3161 time-stamp token (a CMS SignedData over a TSTInfo) against
//! the anchored digest and configured trust-anchor CA certificates. Pure: no I/O, no clock.

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280::{
    ID_CE_EXT_KEY_USAGE, ID_CE_SUBJECT_KEY_IDENTIFIER, ID_KP_TIME_STAMPING,
};
use const_oid::db::rfc5911::ID_SIGNED_DATA;
use const_oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ID_SHA_256, RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION,
};
use der::{Decode, Encode, Tag, Tagged};
use sha2::{Digest, Sha256};
use spki::{DecodePublicKey, SubjectPublicKeyInfoOwned};
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectKeyIdentifier};

use super::asn1::{TstInfo, parse_generalized_time};
use super::{Rfc3161Error, TsaTrust};

/// `id-ct-TSTInfo` (RFC 3161 section 2.4.2).
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// `id-aa-contentType` (RFC 5652 section 11.1).
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// `id-aa-messageDigest` (RFC 5652 section 11.2).
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// `id-aa-signingCertificate` (RFC 2634 section 5.4).
const ID_SIGNING_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.12");
/// `id-aa-signingCertificateV2` (RFC 5035 section 3).
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// The smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The TSA's `genTime`.
    pub gen_time: OffsetDateTime,
    /// The token's serial number, lowercase hex of its DER integer content.
    pub serial_hex: String,
    /// The TSTInfo `tsa` name if present, else the signer certificate's subject.
    pub tsa_name: String,
    /// The TSA policy OID.
    pub policy: String,
    /// The nonce's DER integer content (minimal big-endian), if the token has one.
    pub nonce: Option<Vec<u8>>,
}

fn malformed(what: &'static str) -> impl FnOnce(der::Error) -> Rfc3161Error {
    move |e| Rfc3161Error::MalformedToken {
        what,
        detail: e.to_string(),
    }
}

/// Verifies a DER time-stamp token for `digest`, except the nonce (which only the requester
/// knows; see [`super::verify_response`]). Checks, in order: ContentInfo is signedData;
/// eContentType is id-ct-TSTInfo; exactly one SignerInfo with SHA-256 digest and signed
/// attributes whose content-type is id-ct-TSTInfo and whose messageDigest is SHA-256 of the
/// encapsulated TSTInfo; the signer certificate (carried in the token, and hashed by the first
/// ESSCertID of the signed SigningCertificate or SigningCertificateV2 attribute) and its
/// signature over the signed attributes (RSA PKCS#1 v1.5 or ECDSA P-256, SHA-256); its extended key usage is
/// critical and exactly id-kp-timeStamping; it is signed by one of the trust anchors; both are
/// valid at genTime; the TSTInfo messageImprint is (SHA-256, `digest`).
pub fn verify_token(
    token: &[u8],
    digest: &[u8; 32],
    trust: &TsaTrust,
) -> Result<VerifiedToken, Rfc3161Error> {
    let ci = ContentInfo::from_der(token).map_err(malformed("ContentInfo"))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(Rfc3161Error::NotSignedData(ci.content_type.to_string()));
    }
    let sd: SignedData = ci.content.decode_as().map_err(malformed("SignedData"))?;
    let encap = &sd.encap_content_info;
    if encap.econtent_type != ID_CT_TST_INFO {
        return Err(Rfc3161Error::NotTstInfo(encap.econtent_type.to_string()));
    }
    let econtent = encap
        .econtent
        .as_ref()
        .ok_or(Rfc3161Error::MalformedToken {
            what: "SignedData",
            detail: "no encapsulated content".into(),
        })?;
    if econtent.tag() != Tag::OctetString {
        return Err(Rfc3161Error::MalformedToken {
            what: "eContent",
            detail: "not an OCTET STRING".into(),
        });
    }
    let tst_der = econtent.value();
    let tst = TstInfo::from_der(tst_der).map_err(malformed("TSTInfo"))?;

    let signer_infos = sd.signer_infos.0.as_slice();
    let [si] = signer_infos else {
        return Err(Rfc3161Error::MalformedToken {
            what: "SignedData",
            detail: format!("{} signer infos, expected exactly one", signer_infos.len()),
        });
    };
    if si.digest_alg.oid != ID_SHA_256 {
        return Err(Rfc3161Error::UnsupportedAlgorithm(
            si.digest_alg.oid.to_string(),
        ));
    }
    check_null_or_absent(&si.digest_alg)?;
    check_null_or_absent(&si.signature_algorithm)?;
    if !sd.digest_algorithms.iter().any(|a| *a == si.digest_alg) {
        return Err(Rfc3161Error::MalformedToken {
            what: "SignedData",
            detail: "the signer's digest algorithm is not in digestAlgorithms".into(),
        });
    }
    check_signed_attributes(si, tst_der)?;

    let signer = find_signer(&sd, &si.sid)?;
    check_signing_certificate(si, signer)?;
    let signed_attrs = si
        .signed_attrs
        .as_ref()
        .ok_or(Rfc3161Error::MissingSignedAttributes)?
        .to_der()
        .map_err(malformed("signed attributes"))?;
    verify_signature(
        &signer.tbs_certificate.subject_public_key_info,
        &si.signature_algorithm.oid,
        true,
        &signed_attrs,
        si.signature.as_bytes(),
    )
    .map_err(|e| match e {
        Rfc3161Error::BadSignature(_) => Rfc3161Error::BadSignature("token signature"),
        other => other,
    })?;
    check_time_stamping_eku(signer)?;
    let anchor = check_chain(signer, trust)?;

    let gen_time = parse_generalized_time(&tst.gen_time).ok_or(Rfc3161Error::MalformedToken {
        what: "TSTInfo",
        detail: "genTime is not a UTC GeneralizedTime".into(),
    })?;
    check_validity(signer, gen_time, "TSA certificate")?;
    check_validity(anchor, gen_time, "trust anchor certificate")?;

    if tst.version != 1 {
        return Err(Rfc3161Error::MalformedToken {
            what: "TSTInfo",
            detail: format!("version {}", tst.version),
        });
    }
    let imprint = &tst.message_imprint;
    if imprint.hash_algorithm.oid != ID_SHA_256 {
        return Err(Rfc3161Error::ImprintMismatch);
    }
    if imprint.hashed_message.as_bytes() != digest.as_slice() {
        return Err(Rfc3161Error::ImprintMismatch);
    }

    let tsa_name = match &tst.tsa {
        Some(GeneralName::DirectoryName(name)) => name.to_string(),
        Some(GeneralName::DnsName(name)) => name.to_string(),
        Some(GeneralName::UniformResourceIdentifier(uri)) => uri.to_string(),
        Some(_) | None => signer.tbs_certificate.subject.to_string(),
    };
    Ok(VerifiedToken {
        gen_time,
        serial_hex: hex::encode(tst.serial_number.as_bytes()),
        tsa_name,
        policy: tst.policy.to_string(),
        nonce: tst.nonce.as_ref().map(|n| minimal(n.as_bytes()).to_vec()),
    })
}

/// SHA-256, RSA and ECDSA algorithm identifiers have NULL or absent parameters (RFC 5754,
/// RFC 4055, RFC 5758).
fn check_null_or_absent(alg: &spki::AlgorithmIdentifierOwned) -> Result<(), Rfc3161Error> {
    match &alg.parameters {
        None => Ok(()),
        Some(p) if p.tag() == Tag::Null && p.value().is_empty() => Ok(()),
        Some(_) => Err(Rfc3161Error::MalformedToken {
            what: "algorithm identifier",
            detail: format!("unexpected parameters for {}", alg.oid),
        }),
    }
}

/// Strips leading zero bytes (a positive DER INTEGER's sign byte), keeping at least one byte.
pub(crate) fn minimal(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[start..]
}

/// The signed attributes must carry exactly one content-type (id-ct-TSTInfo) and one
/// messageDigest (SHA-256 of the encapsulated TSTInfo).
fn check_signed_attributes(si: &SignerInfo, tst_der: &[u8]) -> Result<(), Rfc3161Error> {
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or(Rfc3161Error::MissingSignedAttributes)?;
    let single = |oid: ObjectIdentifier, name: &'static str| {
        let mut found = attrs.iter().filter(|a| a.oid == oid);
        match (found.next(), found.next()) {
            (Some(a), None) if a.values.len() == 1 => Ok(a.values.get(0)),
            _ => Err(Rfc3161Error::MalformedToken {
                what: "signed attributes",
                detail: format!("need exactly one {name} attribute with one value"),
            }),
        }
    };
    let content_type = single(ID_CONTENT_TYPE, "content-type")?
        .map(|v| v.decode_as::<ObjectIdentifier>())
        .transpose()
        .map_err(malformed("content-type attribute"))?;
    if content_type != Some(ID_CT_TST_INFO) {
        return Err(Rfc3161Error::NotTstInfo(format!(
            "content-type attribute {content_type:?}"
        )));
    }
    let md = single(ID_MESSAGE_DIGEST, "message-digest")?
        .map(|v| v.decode_as::<der::asn1::OctetString>())
        .transpose()
        .map_err(malformed("message-digest attribute"))?;
    let expected = Sha256::digest(tst_der);
    if md.as_ref().map(|m| m.as_bytes()) != Some(expected.as_slice()) {
        return Err(Rfc3161Error::MessageDigestMismatch);
    }
    Ok(())
}

/// RFC 3161 section 2.4.1 / RFC 5816: a signed SigningCertificate (SHA-1) or
/// SigningCertificateV2 attribute whose first ESSCertID hashes the signer certificate. Both are
/// checked when both are present.
fn check_signing_certificate(si: &SignerInfo, signer: &Certificate) -> Result<(), Rfc3161Error> {
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or(Rfc3161Error::MissingSignedAttributes)?;
    let cert_der = signer.to_der().map_err(malformed("TSA certificate"))?;
    let mut found = false;
    for attr in attrs.iter() {
        let [value] = attr.values.as_slice() else {
            continue;
        };
        if attr.oid == ID_SIGNING_CERTIFICATE_V2 {
            let sc: super::asn1::SigningCertificateV2 = value
                .decode_as()
                .map_err(malformed("signingCertificateV2"))?;
            let first = sc
                .certs
                .first()
                .ok_or(Rfc3161Error::SigningCertificateMismatch)?;
            let alg = first.hash_algorithm.as_ref().map_or(ID_SHA_256, |a| a.oid);
            if alg != ID_SHA_256 {
                return Err(Rfc3161Error::UnsupportedAlgorithm(alg.to_string()));
            }
            if first.cert_hash.as_bytes() != Sha256::digest(&cert_der).as_slice() {
                return Err(Rfc3161Error::SigningCertificateMismatch);
            }
            found = true;
        } else if attr.oid == ID_SIGNING_CERTIFICATE {
            let sc: super::asn1::SigningCertificate =
                value.decode_as().map_err(malformed("signingCertificate"))?;
            let first = sc
                .certs
                .first()
                .ok_or(Rfc3161Error::SigningCertificateMismatch)?;
            if first.cert_hash.as_bytes() != sha1::Sha1::digest(&cert_der).as_slice() {
                return Err(Rfc3161Error::SigningCertificateMismatch);
            }
            found = true;
        }
    }
    if !found {
        return Err(Rfc3161Error::MissingSigningCertificate);
    }
    Ok(())
}

/// The certificate named by the SignerIdentifier, among the token's certificates.
fn find_signer<'a>(
    sd: &'a SignedData,
    sid: &SignerIdentifier,
) -> Result<&'a Certificate, Rfc3161Error> {
    let certs = sd
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            cms::cert::CertificateChoices::Certificate(cert) => Some(cert),
            cms::cert::CertificateChoices::Other(_) => None,
        });
    for cert in certs {
        let tbs = &cert.tbs_certificate;
        let matches = match sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => {
                tbs.issuer == ias.issuer && tbs.serial_number == ias.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => tbs
                .extensions
                .iter()
                .flatten()
                .filter(|e| e.extn_id == ID_CE_SUBJECT_KEY_IDENTIFIER)
                .any(|e| {
                    SubjectKeyIdentifier::from_der(e.extn_value.as_bytes())
                        .is_ok_and(|k| k.0 == ski.0)
                }),
        };
        if matches {
            return Ok(cert);
        }
    }
    Err(Rfc3161Error::SignerCertificateMissing)
}

/// Verifies `sig` over `msg` by the key in `spki` with the algorithm `alg` (SHA-256 only).
/// `rsaEncryption` is accepted as a signature algorithm only in CMS (`allow_bare_rsa`), where
/// RFC 5754 permits it.
pub(crate) fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &ObjectIdentifier,
    allow_bare_rsa: bool,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), Rfc3161Error> {
    use rsa::signature::Verifier;
    let spki_der = spki.to_der().map_err(malformed("public key"))?;
    let bad_key = |e: String| Rfc3161Error::BadPublicKey(e);
    if *alg == SHA_256_WITH_RSA_ENCRYPTION || (allow_bare_rsa && *alg == RSA_ENCRYPTION) {
        let key = rsa::RsaPublicKey::from_public_key_der(&spki_der)
            .map_err(|e| bad_key(e.to_string()))?;
        if rsa::traits::PublicKeyParts::size(&key) * 8 < MIN_RSA_BITS {
            return Err(bad_key(format!("RSA key shorter than {MIN_RSA_BITS} bits")));
        }
        let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key);
        let sig = rsa::pkcs1v15::Signature::try_from(sig)
            .map_err(|_| Rfc3161Error::BadSignature("signature"))?;
        vk.verify(msg, &sig)
            .map_err(|_| Rfc3161Error::BadSignature("signature"))
    } else if *alg == ECDSA_WITH_SHA_256 {
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki_der)
            .map_err(|e| bad_key(e.to_string()))?;
        let sig = p256::ecdsa::Signature::from_der(sig)
            .map_err(|_| Rfc3161Error::BadSignature("signature"))?;
        vk.verify(msg, &sig)
            .map_err(|_| Rfc3161Error::BadSignature("signature"))
    } else {
        Err(Rfc3161Error::UnsupportedAlgorithm(alg.to_string()))
    }
}

/// RFC 3161 section 2.3: exactly one extended key usage extension, critical, with exactly
/// id-kp-timeStamping.
fn check_time_stamping_eku(cert: &Certificate) -> Result<(), Rfc3161Error> {
    let mut ekus = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == ID_CE_EXT_KEY_USAGE);
    let (Some(ext), None) = (ekus.next(), ekus.next()) else {
        return Err(Rfc3161Error::NotTimeStampingCertificate(
            "need exactly one extended key usage extension",
        ));
    };
    if !ext.critical {
        return Err(Rfc3161Error::NotTimeStampingCertificate(
            "extended key usage is not critical",
        ));
    }
    let eku = ExtendedKeyUsage::from_der(ext.extn_value.as_bytes())
        .map_err(malformed("extended key usage"))?;
    if eku.0 != [ID_KP_TIME_STAMPING] {
        return Err(Rfc3161Error::NotTimeStampingCertificate(
            "extended key usage is not exactly id-kp-timeStamping",
        ));
    }
    Ok(())
}

/// The trust anchor that issued `cert` (same name, and its key verifies the certificate's
/// signature).
fn check_chain<'a>(
    cert: &Certificate,
    trust: &'a TsaTrust,
) -> Result<&'a Certificate, Rfc3161Error> {
    let issuer = &cert.tbs_certificate.issuer;
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(malformed("TSA certificate"))?;
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(Rfc3161Error::MalformedToken {
            what: "TSA certificate",
            detail: "outer and inner signature algorithms differ".into(),
        });
    }
    let sig = cert
        .signature
        .as_bytes()
        .ok_or(Rfc3161Error::BadSignature("certificate signature"))?;
    let mut named = false;
    for anchor in trust.anchors() {
        if anchor.tbs_certificate.subject != *issuer {
            continue;
        }
        named = true;
        let ok = verify_signature(
            &anchor.tbs_certificate.subject_public_key_info,
            &cert.signature_algorithm.oid,
            false,
            &tbs,
            sig,
        );
        if ok.is_ok() {
            return Ok(anchor);
        }
    }
    Err(Rfc3161Error::UntrustedSigner {
        issuer: issuer.to_string(),
        reason: if named {
            "the trust anchor with that name did not sign the TSA certificate"
        } else {
            "no trust anchor has that name"
        },
    })
}

fn check_validity(
    cert: &Certificate,
    at: OffsetDateTime,
    which: &'static str,
) -> Result<(), Rfc3161Error> {
    let v = &cert.tbs_certificate.validity;
    let secs = |t: x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    let now = at.unix_timestamp();
    if now < secs(v.not_before) || now > secs(v.not_after) {
        return Err(Rfc3161Error::CertificateNotValidAtGenTime(which));
    }
    Ok(())
}
