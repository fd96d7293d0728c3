//! Admin passwords: Argon2id (the crate defaults: v19, m = 19 MiB, t = 2, p = 1) in PHC
//! string form. Logins for unknown usernames verify against a dummy hash so the response
//! time does not reveal which usernames exist.

use std::sync::OnceLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;

use super::secret::Secret;
use crate::error::Error;

/// Hashes a password with Argon2id and a fresh random salt; returns the PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
pub fn hash_password(password: &str) -> Result<String, Error> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| {
            tracing::error!(error = %e, "argon2 password hashing failed");
            Error::internal("password hashing failed")
        })
}

/// Whether `password` matches the PHC string. A malformed PHC string is a mismatch.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        // Same algorithm and parameters as real hashes, so a verify costs the same.
        // Hashing with the default parameters cannot fail in practice; an empty string
        // would only make unknown-user logins faster, never succeed.
        hash_password(generate_password().expose()).unwrap_or_default()
    })
}

/// Computes the dummy hash now (call at startup), so the first login for an unknown
/// username is not slower than the rest.
pub fn init_dummy_hash() {
    let _ = dummy_hash();
}

/// Spends the time of one real [`verify_password`] and returns `false`. Use it when the
/// username does not exist, so both paths cost one Argon2 verification:
/// `match user { Some(u) => verify_password(pw, &u.hash), None => verify_against_dummy(pw) }`.
pub fn verify_against_dummy(password: &str) -> bool {
    let matched = verify_password(password, dummy_hash());
    std::hint::black_box(matched);
    false
}

/// A random password of 24 URL-safe characters (144 bits), for the bootstrap admin.
pub fn generate_password() -> Secret<String> {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapl", &phc));
        assert!(!verify_password("", &phc));
        // fresh salt per hash
        assert_ne!(phc, hash_password("correct horse battery staple").unwrap());
    }

    #[test]
    fn unicode_and_empty_passwords() {
        let phc = hash_password("pässwörd-🔑").unwrap();
        assert!(verify_password("pässwörd-🔑", &phc));
        assert!(!verify_password("passwort-🔑", &phc));
        let empty = hash_password("").unwrap();
        assert!(verify_password("", &empty));
        assert!(!verify_password(" ", &empty));
    }

    #[test]
    fn malformed_phc_is_a_mismatch() {
        for phc in [
            "",
            "plain",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$bad$bad",
        ] {
            assert!(!verify_password("x", phc), "{phc}");
        }
    }

    #[test]
    fn dummy_verify_never_matches() {
        init_dummy_hash();
        assert!(dummy_hash().starts_with("$argon2id$"));
        assert!(!verify_against_dummy("anything"));
        assert!(!verify_against_dummy(""));
    }

    #[test]
    fn dummy_verify_costs_about_a_real_verify() {
        use std::time::Instant;
        init_dummy_hash();
        let phc = hash_password("pw").unwrap();
        let t = Instant::now();
        assert!(!verify_password("wrong", &phc));
        let real = t.elapsed();
        let t = Instant::now();
        verify_against_dummy("wrong");
        let dummy = t.elapsed();
        // Generous bounds: only catch "the dummy path skips Argon2" on a shared machine.
        assert!(dummy * 10 > real, "dummy {dummy:?} vs real {real:?}");
    }

    #[test]
    fn generated_passwords() {
        let p = generate_password();
        assert_eq!(p.expose().chars().count(), 24);
        assert!(
            p.expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(p, generate_password());
        assert_eq!(p.to_string(), "********");
    }
}
