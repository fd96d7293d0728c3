//! The master keyring: versioned AES-256-GCM keys. The first key encrypts; every key
//! decrypts, so `keys rotate-master` can prepend a new key and re-encrypt online.
//!
//! Envelope layout (all stored secrets):
//!
//! ```text
//! [0]          format version (1)
//! [1]          key id length n (1..=32)
//! [2..2+n]     key id (ASCII, [A-Za-z0-9_-])
//! [.. +12]     random 96-bit nonce
//! [..]         ciphertext || 16-byte GCM tag
//! ```
//!
//! The associated data (e.g. the row id) is not stored: the caller passes the same bytes
//! to `encrypt` and `decrypt`, which binds a ciphertext to its row.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Nonce, Payload};
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rand::Rng;
use sha2::{Digest, Sha256};

/// Envelope format version written by [`Keyring::encrypt`].
pub const ENVELOPE_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const MAX_KID_LEN: usize = 32;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Why a master key specification was refused. Never carries key material: entries are
/// named by 1-based position and, when the key id itself is valid, by key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("the master key is empty")]
    Empty,
    #[error("master key entry #{position} is empty (stray comma?)")]
    EmptyEntry { position: usize },
    #[error("master key entry #{position} is not of the form `kid:base64`")]
    MissingKeyId { position: usize },
    #[error(
        "master key entry #{position} has an invalid key id ({len} characters): key ids are \
         1 to 32 characters of A-Z, a-z, 0-9, '_' and '-'"
    )]
    InvalidKeyId { position: usize, len: usize },
    #[error("master key entry #{position} (kid {kid:?}) repeats a key id used by an earlier entry")]
    DuplicateKeyId { position: usize, kid: String },
    #[error(
        "master key entry #{position} (kid {kid:?}) is not valid base64 \
         (standard or URL-safe alphabet, padding optional)"
    )]
    InvalidBase64 { position: usize, kid: String },
    #[error(
        "master key entry #{position} (kid {kid:?}) decodes to {len} bytes; AES-256 needs \
         exactly 32"
    )]
    WrongLength {
        position: usize,
        kid: String,
        len: usize,
    },
}

/// Why an envelope could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    #[error("no configured key has id {kid:?} (configured key ids: {})", .configured.join(", "))]
    UnknownKey {
        kid: String,
        configured: Vec<String>,
    },
    #[error("authentication failed under key {kid:?} (wrong key or tampered/misbound data)")]
    AuthenticationFailed { kid: String },
}

#[derive(Clone)]
struct KeyEntry {
    id: String,
    cipher: Aes256Gcm,
}

/// Versioned AES-256-GCM keys. `Debug` shows only the key ids.
#[derive(Clone)]
pub struct Keyring {
    /// Encrypts (and decrypts).
    newest: KeyEntry,
    /// Decrypt only, in configured order.
    older: Vec<KeyEntry>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

fn is_valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `k` + the first 8 hex digits of SHA-256 of the key bytes.
fn derived_kid(key: &[u8; KEY_LEN]) -> String {
    let digest = Sha256::digest(key);
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("k{hex}")
}

/// Decodes standard or URL-safe base64, padding optional, into exactly 32 bytes.
fn decode_key(text: &str) -> Result<[u8; KEY_LEN], Option<usize>> {
    let engine = if text.contains(['-', '_']) {
        &URL_SAFE_LENIENT
    } else {
        &STANDARD_LENIENT
    };
    let bytes = engine.decode(text).map_err(|_| None)?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| Some(bytes.len()))
}

fn cipher_for(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))
}

impl Keyring {
    /// Parses `TOLLGATE_MASTER_KEY` / `master.key`: either a bare base64 key of 32 bytes
    /// (its id is derived from the key) or `kid:base64,kid:base64,…` (first encrypts).
    /// Surrounding whitespace of the whole spec and of each entry is ignored.
    pub fn parse(spec: &str) -> Result<Keyring, KeyringError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(KeyringError::Empty);
        }
        if !spec.contains([':', ',']) {
            let key = match decode_key(spec) {
                Ok(key) => key,
                Err(None) => {
                    return Err(KeyringError::InvalidBase64 {
                        position: 1,
                        kid: "(derived)".into(),
                    });
                }
                Err(Some(len)) => {
                    return Err(KeyringError::WrongLength {
                        position: 1,
                        kid: "(derived)".into(),
                        len,
                    });
                }
            };
            return Ok(Keyring {
                newest: KeyEntry {
                    id: derived_kid(&key),
                    cipher: cipher_for(&key),
                },
                older: Vec::new(),
            });
        }

        let mut keys: Vec<KeyEntry> = Vec::new();
        for (index, entry) in spec.split(',').enumerate() {
            let position = index + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(KeyringError::EmptyEntry { position });
            }
            let Some((kid, material)) = entry.split_once(':') else {
                return Err(KeyringError::MissingKeyId { position });
            };
            let kid = kid.trim();
            if !is_valid_kid(kid) {
                return Err(KeyringError::InvalidKeyId {
                    position,
                    len: kid.chars().count(),
                });
            }
            if keys.iter().any(|k| k.id == kid) {
                return Err(KeyringError::DuplicateKeyId {
                    position,
                    kid: kid.to_string(),
                });
            }
            let key = decode_key(material.trim()).map_err(|len| match len {
                None => KeyringError::InvalidBase64 {
                    position,
                    kid: kid.to_string(),
                },
                Some(len) => KeyringError::WrongLength {
                    position,
                    kid: kid.to_string(),
                    len,
                },
            })?;
            keys.push(KeyEntry {
                id: kid.to_string(),
                cipher: cipher_for(&key),
            });
        }
        let mut keys = keys.into_iter();
        let newest = keys.next().ok_or(KeyringError::Empty)?;
        Ok(Keyring {
            newest,
            older: keys.collect(),
        })
    }

    /// A fresh random key. Returns the ring and the text to store in `master.key` or
    /// `TOLLGATE_MASTER_KEY`: `kid:base64` with kid `kYYYYMMDD-xxxxxxxx` (UTC date + the
    /// derived id's hex, so two keys made on one day still differ).
    /// The text holds the key: write it to a 0600 file, never to a log.
    pub fn generate() -> (Keyring, String) {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        let derived = derived_kid(&key);
        let kid = format!(
            "k{}-{}",
            chrono::Utc::now().format("%Y%m%d"),
            derived.trim_start_matches('k')
        );
        let text = format!("{kid}:{}", STANDARD.encode(key));
        let ring = Keyring {
            newest: KeyEntry {
                id: kid,
                cipher: cipher_for(&key),
            },
            older: Vec::new(),
        };
        (ring, text)
    }

    fn entries(&self) -> impl Iterator<Item = &KeyEntry> {
        std::iter::once(&self.newest).chain(&self.older)
    }

    /// The id of the key that encrypts.
    pub fn newest_key_id(&self) -> &str {
        &self.newest.id
    }

    /// All key ids, newest (encrypting) first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.entries().map(|k| k.id.as_str()).collect()
    }

    pub fn contains_key_id(&self, kid: &str) -> bool {
        self.entries().any(|k| k.id == kid)
    }

    /// Encrypts under the newest key with a fresh random nonce. `aad` (e.g. the row id) is
    /// authenticated but not stored; `decrypt` must be given the same bytes.
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let entry = &self.newest;
        let nonce = Nonce::<Aes256Gcm>::generate();
        let ciphertext = entry
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // AES-GCM only refuses plaintexts over 64 GiB or AAD over 2^61 bytes.
            .expect("AES-256-GCM encryption of an in-memory secret cannot fail");
        let kid = entry.id.as_bytes();
        let mut out = Vec::with_capacity(2 + kid.len() + NONCE_LEN + ciphertext.len());
        out.push(ENVELOPE_VERSION);
        // Key ids are at most 32 bytes (checked by `parse`).
        out.push(kid.len() as u8);
        out.extend_from_slice(kid);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts an envelope made by [`Keyring::encrypt`] with any configured key.
    pub fn decrypt(&self, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let parts = split_envelope(envelope)?;
        let Some(entry) = self.entries().find(|k| k.id == parts.kid) else {
            return Err(DecryptError::UnknownKey {
                kid: parts.kid.to_string(),
                configured: self.entries().map(|k| k.id.clone()).collect(),
            });
        };
        let nonce = Nonce::<Aes256Gcm>::try_from(parts.nonce)
            .map_err(|_| DecryptError::Malformed("bad nonce length"))?;
        entry
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: parts.ciphertext,
                    aad,
                },
            )
            .map_err(|_| DecryptError::AuthenticationFailed {
                kid: parts.kid.to_string(),
            })
    }
}

struct EnvelopeParts<'a> {
    kid: &'a str,
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

fn split_envelope(envelope: &[u8]) -> Result<EnvelopeParts<'_>, DecryptError> {
    let (&version, rest) = envelope
        .split_first()
        .ok_or(DecryptError::Malformed("empty"))?;
    if version != ENVELOPE_VERSION {
        return Err(DecryptError::Malformed("unknown format version"));
    }
    let (&kid_len, rest) = rest
        .split_first()
        .ok_or(DecryptError::Malformed("truncated header"))?;
    let kid_len = usize::from(kid_len);
    if kid_len == 0 || kid_len > MAX_KID_LEN {
        return Err(DecryptError::Malformed("bad key id length"));
    }
    if rest.len() < kid_len + NONCE_LEN + TAG_LEN {
        return Err(DecryptError::Malformed("truncated"));
    }
    let (kid, rest) = rest.split_at(kid_len);
    let kid = std::str::from_utf8(kid)
        .ok()
        .filter(|k| is_valid_kid(k))
        .ok_or(DecryptError::Malformed("bad key id"))?;
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    Ok(EnvelopeParts {
        kid,
        nonce,
        ciphertext,
    })
}

/// The id of the key an envelope was encrypted under, if it is well-formed.
pub fn envelope_key_id(envelope: &[u8]) -> Option<&str> {
    split_envelope(envelope).ok().map(|p| p.kid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

    fn key_b64(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn round_trip() {
        let ring = Keyring::parse(&format!("k1:{}", key_b64(1))).unwrap();
        let env = ring.encrypt(b"row-1", b"sk-upstream-secret");
        assert_eq!(env[0], ENVELOPE_VERSION);
        assert_eq!(envelope_key_id(&env), Some("k1"));
        assert_eq!(ring.decrypt(b"row-1", &env).unwrap(), b"sk-upstream-secret");
        // empty plaintext and empty aad work too
        let env = ring.encrypt(b"", b"");
        assert_eq!(ring.decrypt(b"", &env).unwrap(), b"");
    }

    #[test]
    fn ciphertext_does_not_contain_plaintext() {
        let ring = Keyring::parse(&key_b64(9)).unwrap();
        let env = ring.encrypt(b"a", b"plaintext-marker-plaintext-marker");
        assert!(!env.windows(16).any(|w| w == b"plaintext-marker"));
    }

    #[test]
    fn wrong_aad_fails() {
        let ring = Keyring::parse(&format!("k1:{}", key_b64(1))).unwrap();
        let env = ring.encrypt(b"row-1", b"secret");
        let err = ring.decrypt(b"row-2", &env).unwrap_err();
        assert_eq!(err, DecryptError::AuthenticationFailed { kid: "k1".into() });
        assert!(
            err.to_string()
                .contains("wrong key or tampered/misbound data")
        );
    }

    #[test]
    fn tampered_byte_fails() {
        let ring = Keyring::parse(&format!("k1:{}", key_b64(1))).unwrap();
        let env = ring.encrypt(b"row-1", b"secret");
        let header = 2 + 2;
        for i in header..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(
                    ring.decrypt(b"row-1", &bad),
                    Err(DecryptError::AuthenticationFailed { .. })
                ),
                "flipping byte {i} was not detected"
            );
        }
    }

    #[test]
    fn malformed_envelopes() {
        let ring = Keyring::parse(&format!("k1:{}", key_b64(1))).unwrap();
        let env = ring.encrypt(b"a", b"secret");
        for bad in [
            Vec::new(),
            vec![1],
            vec![2, 2, b'k', b'1'],
            env[..env.len() - 10].to_vec(),
            {
                let mut v = env.clone();
                v[0] = 9;
                v
            },
            {
                let mut v = env.clone();
                v[1] = 0;
                v
            },
            {
                let mut v = env.clone();
                v[2] = b'!';
                v
            },
        ] {
            assert!(
                matches!(ring.decrypt(b"a", &bad), Err(DecryptError::Malformed(_))),
                "{bad:?}"
            );
            assert_eq!(envelope_key_id(&bad), None);
        }
    }

    #[test]
    fn unknown_kid_is_named() {
        let old = Keyring::parse(&format!("old:{}", key_b64(1))).unwrap();
        let env = old.encrypt(b"a", b"secret");
        let ring = Keyring::parse(&format!("k2:{},k3:{}", key_b64(2), key_b64(3))).unwrap();
        let err = ring.decrypt(b"a", &env).unwrap_err();
        assert_eq!(
            err,
            DecryptError::UnknownKey {
                kid: "old".into(),
                configured: vec!["k2".into(), "k3".into()],
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("\"old\""), "{msg}");
        assert!(msg.contains("k2, k3"), "{msg}");
    }

    #[test]
    fn same_kid_different_key_fails_authentication() {
        let a = Keyring::parse(&format!("k1:{}", key_b64(1))).unwrap();
        let b = Keyring::parse(&format!("k1:{}", key_b64(2))).unwrap();
        let env = a.encrypt(b"x", b"secret");
        assert_eq!(
            b.decrypt(b"x", &env).unwrap_err(),
            DecryptError::AuthenticationFailed { kid: "k1".into() }
        );
    }

    #[test]
    fn older_key_still_decrypts_after_rotation() {
        let old = Keyring::parse(&format!("k1:{}", key_b64(1))).unwrap();
        let env_old = old.encrypt(b"row", b"old secret");
        let rotated = Keyring::parse(&format!("k2:{}, k1:{}", key_b64(2), key_b64(1))).unwrap();
        assert_eq!(rotated.newest_key_id(), "k2");
        assert_eq!(rotated.key_ids(), vec!["k2", "k1"]);
        assert!(rotated.contains_key_id("k1"));
        assert_eq!(rotated.decrypt(b"row", &env_old).unwrap(), b"old secret");
        let env_new = rotated.encrypt(b"row", b"new secret");
        assert_eq!(envelope_key_id(&env_new), Some("k2"));
        assert_eq!(rotated.decrypt(b"row", &env_new).unwrap(), b"new secret");
        // the old ring cannot read the new envelope
        assert!(matches!(
            old.decrypt(b"row", &env_new),
            Err(DecryptError::UnknownKey { .. })
        ));
    }

    #[test]
    fn encryptions_differ() {
        let ring = Keyring::parse(&key_b64(7)).unwrap();
        let a = ring.encrypt(b"r", b"same plaintext");
        let b = ring.encrypt(b"r", b"same plaintext");
        assert_ne!(a, b);
        assert_eq!(
            ring.decrypt(b"r", &a).unwrap(),
            ring.decrypt(b"r", &b).unwrap()
        );
    }

    #[test]
    fn bare_key_in_every_base64_flavour() {
        let key = [0xfbu8; 32]; // encodes with '+'/'/' or '-'/'_'
        let expected = derived_kid(&key);
        assert_eq!(expected.len(), 9);
        assert!(expected.starts_with('k'));
        let env = Keyring::parse(&STANDARD.encode(key))
            .unwrap()
            .encrypt(b"", b"v");
        for text in [
            STANDARD.encode(key),
            STANDARD.encode(key).trim_end_matches('=').to_string(),
            URL_SAFE.encode(key),
            URL_SAFE_NO_PAD.encode(key),
            format!("  {}\n", STANDARD.encode(key)),
        ] {
            let ring = Keyring::parse(&text).unwrap();
            assert_eq!(ring.key_ids(), vec![expected.as_str()], "{text}");
            assert_eq!(ring.decrypt(b"", &env).unwrap(), b"v");
        }
        // the derived id is SHA-256 based: known answer for the all-zero key
        let zero = Keyring::parse(&STANDARD.encode([0u8; 32])).unwrap();
        assert_eq!(zero.newest_key_id(), "k66687aad");
    }

    #[test]
    fn generate_round_trips_through_parse() {
        let (ring, text) = Keyring::generate();
        let kid = ring.newest_key_id().to_string();
        assert!(is_valid_kid(&kid), "{kid}");
        assert!(text.starts_with(&format!("{kid}:")));
        let parsed = Keyring::parse(&text).unwrap();
        let env = ring.encrypt(b"a", b"b");
        assert_eq!(parsed.decrypt(b"a", &env).unwrap(), b"b");
        let (other, other_text) = Keyring::generate();
        assert_ne!(text, other_text);
        assert_ne!(ring.newest_key_id(), other.newest_key_id());
    }

    #[test]
    fn debug_shows_only_key_ids() {
        let b64 = key_b64(5);
        let ring = Keyring::parse(&format!("main:{b64}")).unwrap();
        let dbg = format!("{ring:?}");
        assert_eq!(dbg, r#"Keyring { key_ids: ["main"] }"#);
    }

    /// Every parse error names the entry but never echoes the key material.
    #[test]
    fn parse_errors_do_not_echo_key_material() {
        let good = key_b64(3);
        let short = STANDARD.encode([4u8; 16]);
        let cases: Vec<(String, KeyringError)> = vec![
            ("".into(), KeyringError::Empty),
            ("  ".into(), KeyringError::Empty),
            (
                "S3cr3t!!notbase64".into(),
                KeyringError::InvalidBase64 {
                    position: 1,
                    kid: "(derived)".into(),
                },
            ),
            (
                short.clone(),
                KeyringError::WrongLength {
                    position: 1,
                    kid: "(derived)".into(),
                    len: 16,
                },
            ),
            (
                format!("a:{good},b:S3cr3t!!notbase64"),
                KeyringError::InvalidBase64 {
                    position: 2,
                    kid: "b".into(),
                },
            ),
            (
                format!("a:{good},b:{short}"),
                KeyringError::WrongLength {
                    position: 2,
                    kid: "b".into(),
                    len: 16,
                },
            ),
            (
                format!("a:{good},a:{good}"),
                KeyringError::DuplicateKeyId {
                    position: 2,
                    kid: "a".into(),
                },
            ),
            (
                format!("a:{good},{good}"),
                KeyringError::MissingKeyId { position: 2 },
            ),
            (
                format!("a:{good},,b:{good}"),
                KeyringError::EmptyEntry { position: 2 },
            ),
            (
                format!("bad kid!:{good}"),
                KeyringError::InvalidKeyId {
                    position: 1,
                    len: 8,
                },
            ),
            (
                format!(":{good}"),
                KeyringError::InvalidKeyId {
                    position: 1,
                    len: 0,
                },
            ),
            (
                format!("{}:{good}", "k".repeat(33)),
                KeyringError::InvalidKeyId {
                    position: 1,
                    len: 33,
                },
            ),
        ];
        for (spec, expected) in cases {
            let err = Keyring::parse(&spec).unwrap_err();
            assert_eq!(err, expected, "spec {spec:?}");
            let msg = err.to_string();
            let dbg = format!("{err:?}");
            for leak in [good.as_str(), short.as_str(), "S3cr3t", "bad kid"] {
                assert!(!msg.contains(leak), "{msg}");
                assert!(!dbg.contains(leak), "{dbg}");
            }
        }
        let msg = Keyring::parse(&format!("a:{good},b:{short}"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("#2") && msg.contains("\"b\""), "{msg}");
    }
}
