//! Tenant API keys: `tg-` + 43 characters of base64url (256 random bits). Only an
//! HMAC-SHA256 of the key under a server-side pepper is stored, which gives O(1) lookup by
//! hash; candidate hashes are compared in constant time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::secret::Secret;

/// Every tenant API key starts with this.
pub const API_KEY_PREFIX: &str = "tg-";
/// Length of a generated key: `tg-` + base64url of 32 bytes without padding.
pub const API_KEY_LEN: usize = 3 + 43;
/// Length of the displayable, non-secret prefix (`tg-` + 8 characters).
pub const KEY_PREFIX_LEN: usize = 11;

/// A new tenant API key: `tg-` + base64url (no padding) of 32 random bytes.
pub fn generate_api_key() -> Secret<String> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The first 11 characters of a key (`tg-` + 8), stored and shown to tell keys apart.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX_LEN).collect()
}

/// Whether `key` has the shape of a generated key (cheap pre-check before hashing).
pub fn is_well_formed_api_key(key: &str) -> bool {
    key.len() == API_KEY_LEN
        && key.starts_with(API_KEY_PREFIX)
        && key[API_KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 32 random bytes for the API-key pepper.
pub fn generate_pepper() -> Vec<u8> {
    let mut pepper = vec![0u8; 32];
    rand::rng().fill_bytes(&mut pepper);
    pepper
}

/// HMAC-SHA256 under the pepper. Holds the keyed MAC state, so hashing a key costs two
/// SHA-256 compressions and no re-keying. `Debug` does not show the pepper.
#[derive(Clone)]
pub struct ApiKeyHasher {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for ApiKeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyHasher")
            .field("pepper", &super::secret::MASK)
            .finish()
    }
}

impl ApiKeyHasher {
    pub fn new(pepper: &[u8]) -> Self {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(pepper)
            .expect("HMAC accepts keys of any length");
        Self { mac }
    }

    /// HMAC-SHA256(pepper, key).
    pub fn hash(&self, key: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `key` hashes to `expected`, compared in constant time.
    pub fn verify(&self, key: &str, expected: &[u8]) -> bool {
        self.hash(key).ct_eq(expected).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = generate_api_key();
        let key = key.expose();
        assert_eq!(key.len(), API_KEY_LEN);
        assert!(key.starts_with("tg-"));
        assert!(is_well_formed_api_key(key), "{key}");
        let raw = URL_SAFE_NO_PAD.decode(&key[3..]).unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(generate_api_key().expose(), key);
        assert_eq!(format!("{:?}", generate_api_key()), "********");
    }

    #[test]
    fn well_formedness() {
        assert!(!is_well_formed_api_key(""));
        assert!(!is_well_formed_api_key("tg-short"));
        assert!(!is_well_formed_api_key(&format!("xx-{}", "a".repeat(43))));
        assert!(!is_well_formed_api_key(&format!("tg-{}+", "a".repeat(42))));
        assert!(!is_well_formed_api_key(&format!("tg-{}é", "a".repeat(41))));
        assert!(is_well_formed_api_key(&format!("tg-{}", "a".repeat(43))));
    }

    #[test]
    fn prefix_is_eleven_chars() {
        assert_eq!(key_prefix("tg-abcdefghijklmnop"), "tg-abcdefgh");
        assert_eq!(key_prefix("tg-abc"), "tg-abc");
        assert_eq!(key_prefix("tg-ééééééééé"), "tg-éééééééé");
        let key = generate_api_key();
        assert_eq!(key_prefix(key.expose()).len(), KEY_PREFIX_LEN);
    }

    #[test]
    fn hash_is_hmac_sha256() {
        // RFC 4231 test case 2
        let h = ApiKeyHasher::new(b"Jefe");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let hex: String = h
            .hash("what do ya want for nothing?")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn verify_and_pepper_matter() {
        let pepper = generate_pepper();
        assert_eq!(pepper.len(), 32);
        assert_ne!(pepper, generate_pepper());
        let h = ApiKeyHasher::new(&pepper);
        let key = generate_api_key();
        let digest = h.hash(key.expose());
        assert_eq!(digest, h.hash(key.expose()));
        assert!(h.verify(key.expose(), &digest));
        assert!(!h.verify("tg-other", &digest));
        assert!(!h.verify(key.expose(), &digest[..31]));
        assert!(!h.verify(key.expose(), &[]));
        let other = ApiKeyHasher::new(&generate_pepper());
        assert!(!other.verify(key.expose(), &digest));
    }

    #[test]
    fn debug_hides_pepper() {
        let h = ApiKeyHasher::new(b"pepper-pepper-pepper");
        let dbg = format!("{h:?}");
        assert_eq!(dbg, r#"ApiKeyHasher { pepper: "********" }"#);
    }
}
