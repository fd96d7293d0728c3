//! Admin passwords: Argon2id (the crate defaults: v19, m = 19 MiB, t = 2, p = 1) in PHC
//! string form. Logins for unknown usernames verify against a dummy hash so the response
//! time does not reveal which usernames exist.
//!
//! Each thread that hashes keeps one Argon2 working buffer and reuses it: allocating
//! 19 MiB of 64-byte-aligned memory per call left the allocator holding about 19 MiB more
//! after every call (measured: ~160 MiB per thread after eight verifications). Logins hash
//! on a few dedicated threads (`crypto::login_guard`), so this bounds the total.

use std::cell::RefCell;
use std::sync::OnceLock;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use subtle::ConstantTimeEq;

use super::secret::Secret;

/// Working memory above this (a hand-made hash with huge parameters) is allocated for the
/// call instead of kept by the thread.
const MAX_KEPT_BLOCKS: usize = 64 * 1024;

thread_local! {
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Argon2 into `out`, in this thread's reusable working memory.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let needed = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    if needed > MAX_KEPT_BLOCKS {
        return argon.hash_password_into(password, salt, out);
    }
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        // Every block is overwritten by the first pass: no need to clear old contents.
        argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..needed])
    })
}

/// Argon2 could not hash a password (not with the default parameters, in practice). The
/// detail is logged where it happens; the message is safe to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashFailed;

/// Hashes a password with Argon2id and a fresh random salt; returns the PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
pub fn hash_password(password: &str) -> Result<String, HashFailed> {
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "argon2 password hashing failed");
        HashFailed
    };
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(
        Algorithm::Argon2id,
        Version::V0x13,
        params.clone(),
        password.as_bytes(),
        &salt,
        &mut out,
    )
    .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string. A malformed PHC string is a mismatch.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if argon2_into(
        algorithm,
        version,
        params,
        password.as_bytes(),
        salt,
        &mut out,
    )
    .is_err()
    {
        return false;
    }
    bool::from(out.as_slice().ct_eq(expected.as_bytes()))
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
    fn compatible_with_the_crates_own_hashes() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let theirs = Argon2::default()
            .hash_password(b"pw-123")
            .unwrap()
            .to_string();
        assert!(verify_password("pw-123", &theirs));
        assert!(!verify_password("pw-124", &theirs));
        let ours = hash_password("pw-123").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"pw-123", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"pw-124", &parsed)
                .is_err()
        );
    }

    #[test]
    fn repeated_verifications_do_not_grow_memory() {
        let rss = || -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        std::thread::spawn(move || {
            let phc = hash_password("pw").unwrap();
            assert!(verify_password("pw", &phc));
            let warm = rss();
            for _ in 0..10 {
                assert!(!verify_password("wrong", &phc));
            }
            // Other tests run in parallel threads: allow some noise, far below the
            // 19 MiB per call this guards against.
            let grown = rss().saturating_sub(warm);
            assert!(
                grown < 40 * 1024,
                "RSS grew by {grown} KiB over 10 verifications"
            );
        })
        .join()
        .unwrap();
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
