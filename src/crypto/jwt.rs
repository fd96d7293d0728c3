//! Admin JWTs (docs/behaviour.md, "Admin authentication and roles"). Tollgate issues HS256 tokens
//! signed with the configured secret (used as raw UTF-8 bytes). Optionally an external identity
//! provider's RS256 or ES256 (P-256) public key is also accepted. Everything else is refused: `alg:
//! none`, other algorithms, bad signatures, expired or not-yet-valid tokens, missing `exp`, and a
//! wrong or missing issuer/audience when those are configured.
//!
//! The header is decoded here first, so the algorithm is chosen by us from a fixed list
//! and the key type is always the one that algorithm needs (no HS256-with-public-key
//! confusion). Errors are short and generic and never contain the token.

use std::collections::HashSet;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::secret::{MASK, Secret};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated for `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    /// The tenant's name, for `tenant_admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The tenant's id, for `tenant_admin` tokens Tollgate issues: the token is bound to
    /// the id, so a renamed tenant keeps its token and a recreated one does not inherit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<uuid::Uuid>,
    /// The stored admin's token generation (`sub` is then the admin's id); tokens with an
    /// older generation than the admin's current one are revoked.
    #[serde(rename = "gen", default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A token whose `aud` is an array is accepted; this holds the configured audience if
    /// the array names it, else the array's first entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub hs256_secret: Secret<String>,
    /// An RS256 (RSA) or ES256 (EC P-256) public key, PEM (`PUBLIC KEY` or
    /// `RSA PUBLIC KEY`).
    pub public_key_pem: Option<String>,
    /// When set, tokens must carry exactly this `iss`; issued tokens carry it.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`; issued tokens carry it.
    pub audience: Option<String>,
}

/// Why a token was refused. The messages are fixed strings: safe for logs and 401 bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    #[error("invalid token signature")]
    InvalidSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("invalid token issuer")]
    InvalidIssuer,
    #[error("invalid token audience")]
    InvalidAudience,
    #[error("invalid token claims")]
    InvalidClaims,
}

/// Who a token is for, beyond `sub`, `role` and the optional tenant name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Binding {
    pub tenant_id: Option<uuid::Uuid>,
    /// A stored admin's token generation.
    pub generation: Option<i64>,
}

/// Signing and verification keys built once from [`JwtSettings`].
/// `Debug` shows algorithms, issuer and audience, never the secret.
#[derive(Clone)]
pub struct JwtKeys {
    hs_encoding: EncodingKey,
    hs_decoding: DecodingKey,
    hs_validation: Validation,
    /// The external IdP's key: RS256 or ES256.
    public: Option<(Algorithm, DecodingKey, Validation)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("hs256_secret", &MASK)
            .field(
                "public_key_alg",
                &self.public.as_ref().map(|(alg, _, _)| alg),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The `-----BEGIN <label>-----` label of the first PEM block.
fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &pem[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

fn public_key_from_pem(pem: &str) -> Result<(Algorithm, DecodingKey), String> {
    const NOT_SUPPORTED: &str =
        "admin JWT public key: expected an RSA or EC P-256 public key in PEM form";
    match pem_label(pem) {
        Some("PUBLIC KEY" | "RSA PUBLIC KEY") => {}
        Some(label) if label.contains("PRIVATE") => {
            return Err(format!(
                "{NOT_SUPPORTED}, got a private key ({label}); configure only the public key"
            ));
        }
        Some(label) => return Err(format!("{NOT_SUPPORTED}, got a {label:?} block")),
        None => return Err(format!("{NOT_SUPPORTED}, got no PEM block")),
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((Algorithm::RS256, key));
    }
    let key = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| NOT_SUPPORTED.to_string())?;
    // Building the ES256 verifier parses the point on P-256: a P-384 key fails here.
    // (With a valid key, the dummy signature just does not verify.)
    jsonwebtoken::crypto::verify("", b"", &key, Algorithm::ES256)
        .map_err(|_| format!("{NOT_SUPPORTED}; this EC key is not on the P-256 curve"))?;
    Ok((Algorithm::ES256, key))
}

fn classify(kind: &ErrorKind) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Provider(_) => JwtError::InvalidSignature,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::InvalidIssuer,
        ErrorKind::InvalidAudience => JwtError::InvalidAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => JwtError::InvalidIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => JwtError::InvalidAudience,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::InvalidSubject
        | ErrorKind::Json(_) => JwtError::InvalidClaims,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => JwtError::UnsupportedAlgorithm,
        _ => JwtError::Malformed,
    }
}

impl JwtKeys {
    pub fn new(settings: &JwtSettings) -> Result<JwtKeys, String> {
        let secret = settings.hs256_secret.expose().as_bytes();
        if secret.is_empty() {
            return Err("admin JWT secret is empty".into());
        }
        let issuer = settings.issuer.clone().filter(|s| !s.is_empty());
        let audience = settings.audience.clone().filter(|s| !s.is_empty());

        let validation_for = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.leeway = LEEWAY_SECS;
            v.validate_exp = true;
            v.validate_nbf = true;
            let mut required: HashSet<String> = HashSet::from(["exp".to_string()]);
            if let Some(iss) = &issuer {
                v.set_issuer(&[iss]);
                required.insert("iss".into());
            }
            match &audience {
                Some(aud) => {
                    v.set_audience(&[aud]);
                    v.validate_aud = true;
                    required.insert("aud".into());
                }
                None => v.validate_aud = false,
            }
            v.required_spec_claims = required;
            v
        };

        let public = match settings.public_key_pem.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(pem) => {
                let (alg, key) = public_key_from_pem(pem)?;
                Some((alg, key, validation_for(alg)))
            }
        };

        Ok(JwtKeys {
            hs_encoding: EncodingKey::from_secret(secret),
            hs_decoding: DecodingKey::from_secret(secret),
            hs_validation: validation_for(Algorithm::HS256),
            public,
            issuer,
            audience,
        })
    }

    /// Signs an HS256 token for `sub` valid for `ttl`; returns it with its expiry.
    pub fn issue(
        &self,
        sub: &str,
        role: &str,
        tenant: Option<&str>,
        ttl: chrono::Duration,
    ) -> Result<(String, DateTime<Utc>), String> {
        self.issue_bound(sub, role, tenant, Binding::default(), ttl)
    }

    /// As [`JwtKeys::issue`], with the tenant id and/or the admin's token generation.
    pub fn issue_bound(
        &self,
        sub: &str,
        role: &str,
        tenant: Option<&str>,
        binding: Binding,
        ttl: chrono::Duration,
    ) -> Result<(String, DateTime<Utc>), String> {
        if ttl <= chrono::Duration::zero() {
            return Err("token lifetime must be positive".into());
        }
        let now = Utc::now();
        let expires = now
            .checked_add_signed(ttl)
            .ok_or_else(|| "token lifetime is too long".to_string())?;
        let claims = Claims {
            sub: sub.to_string(),
            role: role.to_string(),
            tenant: tenant.map(str::to_string),
            tenant_id: binding.tenant_id,
            generation: binding.generation,
            iat: now.timestamp(),
            exp: expires.timestamp(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.hs_encoding)
                .map_err(|e| format!("signing the admin token failed: {e}"))?;
        let expires = DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires);
        Ok((token, expires))
    }

    /// Verifies signature, algorithm, `exp`/`nbf` and (when configured) issuer and
    /// audience, and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        let mut segments = token.split('.');
        let (Some(header), Some(_payload), Some(_signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(JwtError::Malformed);
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| JwtError::Malformed)?;
        let header: RawHeader = serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
        if header.crit.is_some() {
            // No critical header extensions are understood (RFC 7515 §4.1.11).
            return Err(JwtError::UnsupportedAlgorithm);
        }

        let (alg, key, validation) = match header.alg.as_str() {
            "HS256" => (Algorithm::HS256, &self.hs_decoding, &self.hs_validation),
            "RS256" | "ES256" => match &self.public {
                Some((alg, key, validation)) if alg_name(*alg) == header.alg => {
                    (*alg, key, validation)
                }
                _ => return Err(JwtError::UnsupportedAlgorithm),
            },
            _ => return Err(JwtError::UnsupportedAlgorithm),
        };
        debug_assert_eq!(validation.algorithms, vec![alg]);

        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, validation)
            .map_err(|e| classify(e.kind()))?;
        let mut claims = data.claims;
        if let Some(aud) = claims.get_mut("aud")
            && let serde_json::Value::Array(list) = aud
        {
            let chosen = match &self.audience {
                Some(ours) if list.iter().any(|a| a.as_str() == Some(ours)) => Some(ours.clone()),
                _ => list.first().and_then(|a| a.as_str()).map(str::to_string),
            };
            *aud = chosen.map_or(serde_json::Value::Null, serde_json::Value::String);
        }
        serde_json::from_value(claims).map_err(|_| JwtError::InvalidClaims)
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::HS256 => "HS256",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAj1DF0ObtwT5G4CcfAlhT
m7ho459vW5t351ynqqExdavezV9gXHGfm+RXVQytCriJlA+6vlmj0v5A2XThZUs4
2m66QNO35J5ZmeM/fe7tJqNRd+0vl+7uupfM2dfv+bmCBIE1XYSbjXtqrl3gmwtu
eHqHoTD06WzFahIfSnveg4J1acemfQmbO0byPyJCkuW06JjVIYobVE9EY5HrVnH+
ucg2Oa58a99berVW3pCsXjKrvxCEEtA/EKTu7qqmRuE/tWoYQaAUhfOLaShcCOz2
IKsFe8+u/d/5Vch8vRMWJJmSTDiWcVs+upyjxet6T+omfCUbPDsmwmEQkX5lIZF/
twIDAQAB
-----END PUBLIC KEY-----
";
    const RSA_PUBLIC_PKCS1_PEM: &str = "\
-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAj1DF0ObtwT5G4CcfAlhTm7ho459vW5t351ynqqExdavezV9gXHGf
m+RXVQytCriJlA+6vlmj0v5A2XThZUs42m66QNO35J5ZmeM/fe7tJqNRd+0vl+7u
upfM2dfv+bmCBIE1XYSbjXtqrl3gmwtueHqHoTD06WzFahIfSnveg4J1acemfQmb
O0byPyJCkuW06JjVIYobVE9EY5HrVnH+ucg2Oa58a99berVW3pCsXjKrvxCEEtA/
EKTu7qqmRuE/tWoYQaAUhfOLaShcCOz2IKsFe8+u/d/5Vch8vRMWJJmSTDiWcVs+
upyjxet6T+omfCUbPDsmwmEQkX5lIZF/twIDAQAB
-----END RSA PUBLIC KEY-----
";
    const RSA_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCPUMXQ5u3BPkbg
Jx8CWFObuGjjn29bm3fnXKeqoTF1q97NX2BccZ+b5FdVDK0KuImUD7q+WaPS/kDZ
dOFlSzjabrpA07fknlmZ4z997u0mo1F37S+X7u66l8zZ1+/5uYIEgTVdhJuNe2qu
XeCbC254eoehMPTpbMVqEh9Ke96DgnVpx6Z9CZs7RvI/IkKS5bTomNUhihtUT0Rj
ketWcf65yDY5rnxr31t6tVbekKxeMqu/EIQS0D8QpO7uqqZG4T+1ahhBoBSF84tp
KFwI7PYgqwV7z6793/lVyHy9ExYkmZJMOJZxWz66nKPF63pP6iZ8JRs8OybCYRCR
fmUhkX+3AgMBAAECggEAD5trP3m2kKHYlBaOkPHPgRjPC2LUfLRslVyIwdM2EKt7
4v+s/cQ97nsqa4+q1I0OJnqkCpC2f4bCxyusVByh/1+plt+3mgUImvKdenhniRqm
B5pj4XbatqVLYLncX2StXRI5HosPaZP0JTMB/8B58lLdrFcphLYctZVtpO3iaI3F
xQFjbp0ywOScbH7vnuMUDzSgIFaAv378bBcg09AAOLoGI5kGVbuniQiPgQATysoh
D4k/Wa7lDd6+opZwTFrLUA3pwpAtFqel6Dp99ebdYpZaovaGuJe3tGmO2X8VZtoy
FspOjNi0p9jvvXbvViC/T58+jzHk6d705m67TlPLKQKBgQDBfhAXeNDUyHlyFo8y
76oWD3e2kwFDp20T3N9Ff0B5zTD7AfjGcMhjxJbDSBIYY4/qMYfXwyqh1U47T1zb
B2yk9pGKowbPKSTnb41RUT1n4Lgu6EKLQw4Jph4QGyF2uTbhNnpvsUboip7hVfBt
GaGqtGFLlmv18cw4+PqwzLOciwKBgQC9nQy7miIg3zkPxpoot3laiujUDqxi0BS7
hHRGG3WGw2di5xr4/lqt8HCOAgvEerFAr6J3nxbBd+S59ZEyWA7/lHCumjBmuiYb
Gg2aG/uf2HBWVPQPbGTPlBKdl6bWslBUJdV9eh/56VfXqGEJFbXw89QW3lvwOO4h
HTVpLtdzBQKBgQC4wZi38OLm6u4b5DKkHni4S9ixerkwUoQy/SosgA+evjFQ3Fch
lLujmCmlGgI9S4Q1yUm+2lqw4K6sr2Eou3QgKFhcmsJ7uPvGCZxU00/hCpCUKa6w
rzyONhJqqp1PchdXAN/0GsBsd0CyRY8nfdwC1e45cM5xr4qjtAocG7o9dQKBgEy2
Bvq3Buupo5pATQoAAHajEEMKlK99Y4XhtnDOlyOoVmFrAjyOGv2X8tFg/oXE5YU4
CVC/6iLncH/TW6S0f4zi7xuUgdRtpxD731jjzU8D757dy8eZoMdiLo3XVsYxadJB
ZDfZeqpOvx0en/Ne9za+TqXZ2/Q59A0tlfgx3TRJAoGANlgQTbxuu4UflGpDA5E8
+6n4r8sHpDR5QoTD8Vi56na8Jy7szdm1D2zc4irJIHw4zzkATCquifS8weyoLxN3
2P+VQ2ExUT9lup9K+m98XFsZRra00Gbw/ow+rgQcFvVjGIDnryVwnxW09UIRduYN
XC4ORI3aEpEYqUYMhqiNa54=
-----END PRIVATE KEY-----
";
    const EC_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEw9e9FY3wr+OgP3IXjEudYzFU9Qsk
GHf2zdUpz5w6g5dUVHhbLLFt1vbcT5ujpZK0ji4NgKmjGd4yMK25KFvGvg==
-----END PUBLIC KEY-----
";
    const EC_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKVzz26uFXtW2t9PF
8zOyj4+1Cq1nmm2N4Clgm9SdH0ShRANCAATD170VjfCv46A/cheMS51jMVT1CyQY
d/bN1SnPnDqDl1RUeFsssW3W9txPm6OlkrSOLg2AqaMZ3jIwrbkoW8a+
-----END PRIVATE KEY-----
";
    const EC_P384_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEXD8DUO9wVL9dD9zF0HsBPPlhNnFuvqF5
bZQAnchxlWASkNRxuLNDSL2WVW4qkQN1NPM62DJsVosGoLlJHYEUm4NDV8qz1OJB
xujxFT7o6Y4ryQhDv/cFvPSXpQ+XEGTt
-----END PUBLIC KEY-----
";
    const ED25519_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAP3UP9jVa2KusFAbZXekKeGFMo2MqdQvGJgFViuc3ukg=
-----END PUBLIC KEY-----
";

    const SECRET: &str = "test-secret-0123456789";

    fn settings() -> JwtSettings {
        JwtSettings {
            hs256_secret: Secret::new(SECRET.to_string()),
            public_key_pem: None,
            issuer: None,
            audience: None,
        }
    }

    fn keys() -> JwtKeys {
        JwtKeys::new(&settings()).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    fn claims_json(exp: i64) -> serde_json::Value {
        serde_json::json!({"sub": "alice", "role": "admin", "iat": now(), "exp": exp})
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
    }

    fn sign_hs(secret: &str, claims: &serde_json::Value) -> String {
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(secret.as_bytes()),
            claims,
        )
    }

    /// Replaces one of the three segments.
    fn with_segment(token: &str, index: usize, value: &str) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[index] = value;
        parts.join(".")
    }

    #[test]
    fn issue_and_verify_round_trip() {
        let keys = keys();
        let before = now();
        let (token, expires) = keys
            .issue(
                "alice",
                "tenant_admin",
                Some("acme"),
                chrono::Duration::hours(1),
            )
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.role, "tenant_admin");
        assert_eq!(claims.tenant.as_deref(), Some("acme"));
        assert!(claims.iat >= before && claims.iat <= now());
        assert_eq!(claims.exp, claims.iat + 3600);
        assert_eq!(expires.timestamp(), claims.exp);
        assert_eq!(claims.iss, None);
        assert_eq!(claims.aud, None);
        // header is HS256 and the optional claims are omitted
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "HS256");
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(payload.get("iss").is_none() && payload.get("aud").is_none());

        let (token, _) = keys
            .issue("bob", "viewer", None, chrono::Duration::minutes(5))
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.tenant, None);
        assert!(
            keys.issue("bob", "viewer", None, chrono::Duration::zero())
                .is_err()
        );
        assert!(
            keys.issue("bob", "viewer", None, chrono::Duration::seconds(-5))
                .is_err()
        );
    }

    #[test]
    fn bound_tokens_carry_generation_and_tenant_id() {
        let keys = keys();
        let tenant_id = uuid::Uuid::now_v7();
        let binding = Binding {
            tenant_id: Some(tenant_id),
            generation: Some(3),
        };
        let (token, _) = keys
            .issue_bound(
                "id-1",
                "tenant_admin",
                Some("acme"),
                binding,
                chrono::Duration::hours(1),
            )
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (claims.generation, claims.tenant_id),
            (Some(3), Some(tenant_id))
        );
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["gen"], 3);
        assert_eq!(payload["tenant_id"], tenant_id.to_string());
        // Unbound tokens carry neither claim.
        let (token, _) = keys
            .issue("cli", "admin", None, chrono::Duration::hours(1))
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.generation, claims.tenant_id), (None, None));
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let keys = keys();
        let (token, _) = keys
            .issue("alice", "viewer", None, chrono::Duration::hours(1))
            .unwrap();
        let mut claims = claims_json(now() + 3600);
        claims["role"] = "admin".into();
        let forged = with_segment(&token, 1, &b64(claims.to_string().as_bytes()));
        assert_eq!(keys.verify(&forged), Err(JwtError::InvalidSignature));
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let keys = keys();
        let (token, _) = keys
            .issue("alice", "admin", None, chrono::Duration::hours(1))
            .unwrap();
        let sig = token.split('.').nth(2).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 1;
        assert_eq!(
            keys.verify(&with_segment(&token, 2, &b64(&raw))),
            Err(JwtError::InvalidSignature)
        );
        assert_eq!(
            keys.verify(&with_segment(&token, 2, "")),
            Err(JwtError::InvalidSignature)
        );
    }

    #[test]
    fn wrong_secret_is_rejected() {
        let token = sign_hs("some-other-secret", &claims_json(now() + 600));
        assert_eq!(keys().verify(&token), Err(JwtError::InvalidSignature));
        // the right secret passes
        let token = sign_hs(SECRET, &claims_json(now() + 600));
        assert!(keys().verify(&token).is_ok());
    }

    #[test]
    fn alg_none_and_other_algorithms_are_rejected() {
        let keys = keys();
        let payload = b64(claims_json(now() + 600).to_string().as_bytes());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None"}"#,
            r#"{"alg":"NONE"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"alg":"HS512"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"ES256"}"#,
            r#"{"alg":"EdDSA"}"#,
            r#"{"alg":"XYZ1"}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
        ] {
            let token = format!("{}.{payload}.", b64(header.as_bytes()));
            assert_eq!(
                keys.verify(&token),
                Err(JwtError::UnsupportedAlgorithm),
                "{header}"
            );
        }
        // alg none with a (meaningless) signature too
        let token = format!("{}.{payload}.{}", b64(br#"{"alg":"none"}"#), b64(b"sig"));
        assert_eq!(keys.verify(&token), Err(JwtError::UnsupportedAlgorithm));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let keys = keys();
        let good = sign_hs(SECRET, &claims_json(now() + 600));
        let payload = b64(claims_json(now() + 600).to_string().as_bytes());
        for token in [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{good}.extra"),
            format!("!!!.{payload}.sig"),
            format!("{}.{payload}.sig", b64(b"not json")),
            format!("{}.{payload}.sig", b64(b"[1,2]")),
            format!("{}.{payload}.sig", b64(br#"{"typ":"JWT"}"#)),
            format!("{}.{payload}.sig", b64(br#"{"alg":5}"#)),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            let err = keys.verify(&token).unwrap_err();
            assert_eq!(err, JwtError::Malformed, "{token}");
        }
        // garbage payload under a valid-looking HS256 header
        let hs = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        let err = keys.verify(&format!("{hs}.%%%.sig")).unwrap_err();
        assert!(
            matches!(err, JwtError::Malformed | JwtError::InvalidSignature),
            "{err:?}"
        );
    }

    #[test]
    fn expired_token_is_rejected() {
        let keys = keys();
        let token = sign_hs(SECRET, &claims_json(now() - 60));
        let err = keys.verify(&token).unwrap_err();
        assert_eq!(err, JwtError::Expired);
        assert_eq!(err.to_string(), "token expired");
        // not-yet-valid is rejected too
        let mut claims = claims_json(now() + 600);
        claims["nbf"] = (now() + 300).into();
        assert_eq!(
            keys.verify(&sign_hs(SECRET, &claims)),
            Err(JwtError::NotYetValid)
        );
    }

    #[test]
    fn missing_or_bad_claims_are_rejected() {
        let keys = keys();
        let no_exp = serde_json::json!({"sub": "alice", "role": "admin", "iat": now()});
        assert_eq!(
            keys.verify(&sign_hs(SECRET, &no_exp)),
            Err(JwtError::InvalidClaims)
        );
        let no_role = serde_json::json!({"sub": "alice", "iat": now(), "exp": now() + 60});
        assert_eq!(
            keys.verify(&sign_hs(SECRET, &no_role)),
            Err(JwtError::InvalidClaims)
        );
        let string_exp =
            serde_json::json!({"sub": "a", "role": "admin", "iat": now(), "exp": "soon"});
        assert_eq!(
            keys.verify(&sign_hs(SECRET, &string_exp)),
            Err(JwtError::InvalidClaims)
        );
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let strict = JwtKeys::new(&JwtSettings {
            issuer: Some("tollgate".into()),
            audience: Some("tollgate-admin".into()),
            ..settings()
        })
        .unwrap();
        let (token, _) = strict
            .issue("alice", "admin", None, chrono::Duration::hours(1))
            .unwrap();
        let claims = strict.verify(&token).unwrap();
        assert_eq!(claims.iss.as_deref(), Some("tollgate"));
        assert_eq!(claims.aud.as_deref(), Some("tollgate-admin"));

        let with = |iss: Option<&str>, aud: Option<serde_json::Value>| {
            let mut c = claims_json(now() + 600);
            if let Some(iss) = iss {
                c["iss"] = iss.into();
            }
            if let Some(aud) = aud {
                c["aud"] = aud;
            }
            strict.verify(&sign_hs(SECRET, &c))
        };
        assert_eq!(
            with(Some("evil"), Some("tollgate-admin".into())),
            Err(JwtError::InvalidIssuer)
        );
        assert_eq!(
            with(None, Some("tollgate-admin".into())),
            Err(JwtError::InvalidIssuer)
        );
        assert_eq!(
            with(Some("tollgate"), Some("other".into())),
            Err(JwtError::InvalidAudience)
        );
        assert_eq!(with(Some("tollgate"), None), Err(JwtError::InvalidAudience));
        // an audience array that names us is fine
        let claims = with(
            Some("tollgate"),
            Some(serde_json::json!(["other", "tollgate-admin"])),
        )
        .unwrap();
        assert_eq!(claims.aud.as_deref(), Some("tollgate-admin"));

        // unconfigured: iss/aud are not checked
        let lax = keys();
        let mut c = claims_json(now() + 600);
        c["iss"] = "anyone".into();
        c["aud"] = serde_json::json!(["x", "y"]);
        let claims = lax.verify(&sign_hs(SECRET, &c)).unwrap();
        assert_eq!(claims.iss.as_deref(), Some("anyone"));
        assert_eq!(claims.aud.as_deref(), Some("x"));
        // a token issued by the strict config still verifies on the lax one
        assert!(lax.verify(&token).is_ok());
    }

    #[test]
    fn rs256_with_configured_public_key() {
        for pem in [RSA_PUBLIC_PEM, RSA_PUBLIC_PKCS1_PEM] {
            let keys = JwtKeys::new(&JwtSettings {
                public_key_pem: Some(pem.to_string()),
                ..settings()
            })
            .unwrap();
            assert!(format!("{keys:?}").contains("RS256"));
            let enc = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
            let token = sign(Algorithm::RS256, &enc, &claims_json(now() + 600));
            let claims = keys.verify(&token).unwrap();
            assert_eq!(claims.sub, "alice");

            // tampered payload
            let mut forged = claims_json(now() + 600);
            forged["sub"] = "mallory".into();
            let forged = with_segment(&token, 1, &b64(forged.to_string().as_bytes()));
            assert_eq!(keys.verify(&forged), Err(JwtError::InvalidSignature));
            // expired
            let old = sign(Algorithm::RS256, &enc, &claims_json(now() - 60));
            assert_eq!(keys.verify(&old), Err(JwtError::Expired));
            // other RSA algorithms and ES256 stay refused
            let ps = sign(Algorithm::PS256, &enc, &claims_json(now() + 600));
            assert_eq!(keys.verify(&ps), Err(JwtError::UnsupportedAlgorithm));
            let ec = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap();
            let es = sign(Algorithm::ES256, &ec, &claims_json(now() + 600));
            assert_eq!(keys.verify(&es), Err(JwtError::UnsupportedAlgorithm));
            // HS256 with the shared secret still works
            let (hs, _) = keys
                .issue("bob", "admin", None, chrono::Duration::hours(1))
                .unwrap();
            assert!(keys.verify(&hs).is_ok());
            // key confusion: HS256 "signed" with the public key as secret
            let confused = sign_hs(pem, &claims_json(now() + 600));
            assert_eq!(keys.verify(&confused), Err(JwtError::InvalidSignature));
        }
    }

    #[test]
    fn es256_with_configured_public_key() {
        let keys = JwtKeys::new(&JwtSettings {
            public_key_pem: Some(format!("\n{EC_PUBLIC_PEM}\n")),
            ..settings()
        })
        .unwrap();
        assert!(format!("{keys:?}").contains("ES256"));
        let enc = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap();
        let token = sign(Algorithm::ES256, &enc, &claims_json(now() + 600));
        assert_eq!(keys.verify(&token).unwrap().role, "admin");

        let sig = token.split('.').nth(2).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[10] ^= 0x40;
        assert_eq!(
            keys.verify(&with_segment(&token, 2, &b64(&raw))),
            Err(JwtError::InvalidSignature)
        );
        let old = sign(Algorithm::ES256, &enc, &claims_json(now() - 60));
        assert_eq!(keys.verify(&old), Err(JwtError::Expired));
        // RS256 refused when only an EC key is configured
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        let rs = sign(Algorithm::RS256, &rsa, &claims_json(now() + 600));
        assert_eq!(keys.verify(&rs), Err(JwtError::UnsupportedAlgorithm));
    }

    #[test]
    fn bad_key_configuration_is_refused_without_echoing_it() {
        for (pem, expect) in [
            (ED25519_PUBLIC_PEM, "expected an RSA or EC P-256"),
            (EC_P384_PUBLIC_PEM, "P-256"),
            (EC_PRIVATE_PEM, "private key"),
            (RSA_PRIVATE_PEM, "private key"),
            ("not a pem at all", "no PEM block"),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "expected an RSA",
            ),
        ] {
            let err = JwtKeys::new(&JwtSettings {
                public_key_pem: Some(pem.to_string()),
                ..settings()
            })
            .unwrap_err();
            assert!(err.contains(expect), "{err}");
            // no line of key material appears in the error
            for line in pem
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 3)
            {
                assert!(!err.contains(line), "{err}");
            }
        }
        let empty = JwtKeys::new(&JwtSettings {
            hs256_secret: Secret::new(String::new()),
            ..settings()
        });
        assert!(empty.is_err());
        // an empty PEM means "not configured"
        let keys = JwtKeys::new(&JwtSettings {
            public_key_pem: Some("  ".into()),
            ..settings()
        })
        .unwrap();
        assert!(format!("{keys:?}").contains("public_key_alg: None"));
    }

    #[test]
    fn errors_and_debug_do_not_leak() {
        let keys = keys();
        let dbg = format!("{keys:?}");
        assert!(!dbg.contains(SECRET), "{dbg}");
        assert!(dbg.contains("********"));
        let s = settings();
        assert!(!format!("{s:?}").contains(SECRET));

        let token = sign_hs("wrong", &claims_json(now() + 60));
        let err = keys.verify(&token).unwrap_err();
        for part in token.split('.') {
            assert!(!err.to_string().contains(part));
            assert!(!format!("{err:?}").contains(part));
        }
        assert_eq!(err, JwtError::InvalidSignature);
        assert_eq!(err.to_string(), "invalid token signature");
    }
}
