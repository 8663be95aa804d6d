//! Passwords (argon2id), signed cookies and CSRF tokens (HMAC-SHA256).
//!
//! A session cookie is `<token>.<signature>`: the token is 32 random bytes,
//! state.db keeps only its SHA-256, and the signature lets a forged cookie be
//! refused before the database is asked. The sign-in form has no session
//! yet, so its CSRF token is the signature of a random pre-session cookie
//! (signed double submit); every later form carries the session's own token.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie.
pub const SESSION_COOKIE: &str = "manyi_session";
/// The pre-session cookie the sign-in form's CSRF token is bound to.
pub const PRE_COOKIE: &str = "manyi_pre";

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("the password could not be hashed: {0}")]
pub struct HashError(String);

/// Hashes a password with argon2id (default parameters, random 16-byte salt).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    Argon2::default().hash_password_with_salt(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// A hash no password matches, verified for unknown names so that a wrong
/// name takes as long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no account has this password").unwrap_or_default())
}

/// 32 random bytes in hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// SHA-256 of a token, as state.db keeps it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The signing key of cookies and CSRF tokens.
pub struct Keys {
    key: Vec<u8>,
}

impl Keys {
    /// A key from the environment variable, or a random one for this process.
    pub fn from_env(var: &str) -> Keys {
        match std::env::var(var) {
            Ok(s) if s.len() >= 16 => Keys { key: s.into_bytes() },
            _ => {
                tracing::warn!(var, "no site key in the environment: a random key for this process; a restart signs everyone out");
                Keys { key: random_token().into_bytes() }
            }
        }
    }

    fn mac(&self, purpose: &str, value: &str) -> String {
        match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mut m) => {
                m.update(purpose.as_bytes());
                m.update(b"\0");
                m.update(value.as_bytes());
                hex::encode(m.finalize().into_bytes())
            }
            // HMAC takes keys of any length; this arm is never reached.
            Err(_) => String::new(),
        }
    }

    /// `<value>.<signature>`.
    pub fn sign(&self, value: &str) -> String {
        format!("{value}.{}", self.mac("cookie", value))
    }

    /// The value of a signed cookie whose signature is right.
    pub fn unsign<'a>(&self, signed: &'a str) -> Option<&'a str> {
        let (value, sig) = signed.rsplit_once('.')?;
        let want = self.mac("cookie", value);
        (!value.is_empty() && constant_eq(sig.as_bytes(), want.as_bytes())).then_some(value)
    }

    /// The CSRF token of the sign-in form bound to a pre-session cookie value.
    pub fn login_csrf(&self, pre: &str) -> String {
        self.mac("login-csrf", pre)
    }
}

/// Compares without stopping at the first difference.
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value from the `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|p| p.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_signatures() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("x", "not a hash"));
        let k = Keys { key: b"0123456789abcdef".to_vec() };
        let s = k.sign("tok");
        assert_eq!(k.unsign(&s), Some("tok"));
        assert_eq!(k.unsign(&s.replace("tok", "tol")), None);
        assert_eq!(Keys { key: b"other-key-0123456".to_vec() }.unsign(&s), None);
        assert_eq!(cookie("a=1; manyi_session=x.y; b=2", SESSION_COOKIE), Some("x.y"));
        assert_ne!(k.login_csrf("p"), k.login_csrf("q"));
    }
}
