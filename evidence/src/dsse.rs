//! DSSE (Dead Simple Signing Envelope, <https://github.com/secure-systems-lab/dsse>, the
//! envelope of in-toto attestations and Tekton Chains) with Ed25519 signatures.
//!
//! The signature is over the envelope's pre-authentication encoding (PAE, the spec's
//! "Protocol"): `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths as ASCII decimal
//! byte counts. The payload type is signed too, so a bundle cannot be passed off as another
//! kind of document. No Rust crate on crates.io implements DSSE without pulling a whole
//! Sigstore client; the encoding is these few lines, tested against the spec's example.

use base64::Engine as _;
use paddock_crds::verdict::Signer;
use serde::{Deserialize, Serialize};

/// A DSSE envelope (JSON form): `{"payloadType", "payload" (base64), "signatures": [{"keyid",
/// "sig" (base64)}]}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Media type of the payload, e.g. [`crate::bundle::PAYLOAD_TYPE`].
    pub payload_type: String,
    /// The payload, standard base64.
    pub payload: String,
    /// Signatures over [`pae`] of the type and the decoded payload. Empty: unsigned.
    pub signatures: Vec<Signature>,
}

/// One signature of an [`Envelope`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Signature {
    /// Which key signed: [`key_id`] of its public key.
    #[serde(default)]
    pub keyid: String,
    /// Ed25519 signature, standard base64 of its 64 bytes.
    pub sig: String,
}

/// Why an envelope does not verify. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not JSON, or not an envelope.
    #[error("not a DSSE envelope (a bundle written by `kubectl paddock export` or the archive): {0}")]
    NotEnvelope(String),
    /// The payload type is not the one expected.
    #[error("payload type is {found:?}, expected {expected:?}")]
    PayloadType {
        /// What the envelope says.
        found: String,
        /// What the caller expects.
        expected: String,
    },
    /// The payload is not valid base64 (a changed character).
    #[error("the payload is not valid base64 (the file was changed): {0}")]
    PayloadBase64(String),
    /// No signatures at all.
    #[error(
        "the bundle is unsigned (assembled by `kubectl paddock export` from the cluster, not signed by the operator)"
    )]
    Unsigned,
    /// Signatures exist, none by the trusted key.
    #[error("no signature by the trusted key {trusted} (signed by: {found})")]
    OtherKey {
        /// The trusted key's id.
        trusted: String,
        /// The key ids the envelope carries.
        found: String,
    },
    /// The trusted key's signature does not match: the payload or its type was changed after
    /// signing.
    #[error("signature by {0} does NOT match: the bundle was changed after the operator signed it")]
    BadSignature(String),
}

/// DSSE's pre-authentication encoding of (`payload_type`, `payload`). Pure.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Key id of an Ed25519 public key (base64 of its 32 raw bytes): `sha256:` and the hex SHA-256
/// of the raw bytes (of the base64 text if it does not decode). Pure.
pub fn key_id(public_key_b64: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(public_key_b64)
        .unwrap_or_else(|_| public_key_b64.as_bytes().to_vec());
    format!(
        "sha256:{}",
        hex(ring::digest::digest(&ring::digest::SHA256, &raw).as_ref())
    )
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
    )
}

/// Signs `payload` as `payload_type` with `signer`: an envelope with one signature.
pub fn sign(signer: &Signer, payload_type: &str, payload: &[u8]) -> Envelope {
    let b64 = base64::engine::general_purpose::STANDARD;
    Envelope {
        payload_type: payload_type.to_string(),
        payload: b64.encode(payload),
        signatures: vec![Signature {
            keyid: key_id(&signer.public_key_b64()),
            sig: signer.sign(&pae(payload_type, payload)),
        }],
    }
}

/// An unsigned envelope of `payload` (what a user assembles without the operator's key).
pub fn unsigned(payload_type: &str, payload: &[u8]) -> Envelope {
    Envelope {
        payload_type: payload_type.to_string(),
        payload: base64::engine::general_purpose::STANDARD.encode(payload),
        signatures: vec![],
    }
}

/// Parses `bytes` as an envelope of `payload_type` and returns its decoded payload, without
/// checking any signature (for reading an unsigned export).
///
/// # Errors
/// [`VerifyError::NotEnvelope`], [`VerifyError::PayloadType`], [`VerifyError::PayloadBase64`].
pub fn open_unverified(bytes: &[u8], payload_type: &str) -> Result<(Envelope, Vec<u8>), VerifyError> {
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| VerifyError::NotEnvelope(e.to_string()))?;
    if env.payload_type != payload_type {
        return Err(VerifyError::PayloadType {
            found: env.payload_type,
            expected: payload_type.into(),
        });
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env.payload.as_bytes())
        .map_err(|e| VerifyError::PayloadBase64(e.to_string()))?;
    Ok((env, payload))
}

/// Verifies `bytes` (an envelope's JSON) against the trusted public key (base64 of its 32 raw
/// bytes) and returns the decoded payload.
///
/// # Errors
/// Any [`VerifyError`]: a single changed byte anywhere in the payload, its type or the
/// signature fails.
pub fn verify(bytes: &[u8], payload_type: &str, public_key_b64: &str) -> Result<Vec<u8>, VerifyError> {
    let (env, payload) = open_unverified(bytes, payload_type)?;
    if env.signatures.is_empty() {
        return Err(VerifyError::Unsigned);
    }
    let trusted = key_id(public_key_b64);
    let mine: Vec<&Signature> = env.signatures.iter().filter(|s| s.keyid == trusted).collect();
    if mine.is_empty() {
        return Err(VerifyError::OtherKey {
            trusted,
            found: env
                .signatures
                .iter()
                .map(|s| s.keyid.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let message = pae(&env.payload_type, &payload);
    if mine
        .iter()
        .any(|s| paddock_crds::verdict::verify(public_key_b64, &message, &s.sig))
    {
        Ok(payload)
    } else {
        Err(VerifyError::BadSignature(trusted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn a_signed_envelope_verifies_and_every_single_changed_byte_fails() {
        let signer = Signer::generate().unwrap();
        let pk = signer.public_key_b64();
        let env = sign(&signer, "application/x-test", br#"{"run":"r-1","cost":0.12}"#);
        let bytes = serde_json::to_vec(&env).unwrap();
        assert_eq!(
            verify(&bytes, "application/x-test", &pk).unwrap(),
            br#"{"run":"r-1","cost":0.12}"#
        );
        // Flip each byte of the file in turn (a different printable character): none verifies.
        let mut accepted = vec![];
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            if verify(&t, "application/x-test", &pk).is_ok() {
                accepted.push(i);
            }
        }
        // Only changes that leave the meaning intact may pass: none in this compact JSON except
        // inside the key id string, which only selects the signature (its change fails too).
        assert!(accepted.is_empty(), "changed bytes still verified at {accepted:?}");
    }

    #[test]
    fn another_key_an_unsigned_envelope_and_a_wrong_type_say_so() {
        let signer = Signer::generate().unwrap();
        let other = Signer::generate().unwrap();
        let bytes = serde_json::to_vec(&sign(&signer, "t", b"x")).unwrap();
        assert!(matches!(
            verify(&bytes, "t", &other.public_key_b64()),
            Err(VerifyError::OtherKey { .. })
        ));
        assert!(matches!(
            verify(&bytes, "u", &signer.public_key_b64()),
            Err(VerifyError::PayloadType { .. })
        ));
        let unsigned = serde_json::to_vec(&unsigned("t", b"x")).unwrap();
        assert!(matches!(
            verify(&unsigned, "t", &signer.public_key_b64()),
            Err(VerifyError::Unsigned)
        ));
        assert!(matches!(
            verify(b"not json", "t", &signer.public_key_b64()),
            Err(VerifyError::NotEnvelope(_))
        ));
    }
}
