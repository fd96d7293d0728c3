//! Secrets: the master keyring (AES-256-GCM), the `Secret` wrapper, tenant API keys,
//! admin passwords (and the guard that bounds their hashing and login attempts), admin
//! JWTs, and the redaction of credential values.

pub mod api_key;
pub mod jwt;
pub mod keyring;
pub mod login_guard;
pub mod password;
pub mod redact;
pub mod secret;

pub use api_key::{
    ApiKeyHasher, generate_api_key, generate_pepper, is_well_formed_api_key, key_prefix,
};
pub use jwt::{Binding, Claims, JwtError, JwtKeys, JwtSettings};
pub use keyring::{DecryptError, Keyring, KeyringError, envelope_key_id};
pub use login_guard::{HashingUnavailable, LockedBy, Lockout};
pub use password::{
    HashFailed, generate_password, hash_password, init_dummy_hash, verify_against_dummy,
    verify_password,
};
pub use secret::{MASK, Secret, mask_hint, masked};
