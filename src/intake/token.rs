//! Case-slip tokens: single-use, signed, optionally bound to a 办件编号.
//!
//! A token is `<payload>.<mac>`, both base64url without padding; the payload
//! is `v1|<point>|<slip id>|<case no>|<expires, Unix seconds>` and the mac
//! the first 16 bytes of HMAC-SHA256 over the payload text (128 bits are
//! plenty against forgery and keep the QR code small). Use is tracked by the
//! slip id in the landing file, not in the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Bytes of the MAC kept in a token.
const MAC_LEN: usize = 16;

/// Why a token is refused. The messages name no personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not two base64url parts, or a payload that does not parse.
    #[error("malformed token")]
    Malformed,
    /// The MAC does not match: forged or altered.
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("expired")]
    Expired,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slip {
    /// The service point the slip belongs to.
    pub point: String,
    /// Unique id of the slip (the rating id is derived from it).
    pub slip_id: String,
    /// 办件编号 it is bound to, or empty.
    pub case_no: String,
    /// Expiry, Unix seconds.
    pub expires: i64,
}

fn mac(secret: &[u8], payload: &str) -> Vec<u8> {
    // HMAC takes keys of any length, so building it cannot fail; the
    // fallback is unreachable but avoids an unwrap.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(payload.as_bytes());
            m.finalize().into_bytes()[..MAC_LEN].to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Signs a slip into a token.
pub fn sign(secret: &[u8], slip: &Slip) -> String {
    let payload = format!("v1|{}|{}|{}|{}", slip.point, slip.slip_id, slip.case_no, slip.expires);
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload.as_bytes()), URL_SAFE_NO_PAD.encode(mac(secret, &payload)))
}

/// Checks a token's signature and expiry at `now` (Unix seconds).
pub fn verify(secret: &[u8], token: &str, now: i64) -> Result<Slip, TokenError> {
    let (p, m) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed)?;
    let given = URL_SAFE_NO_PAD.decode(m).map_err(|_| TokenError::Malformed)?;
    let payload = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
    let want = mac(secret, &payload);
    // Constant-time comparison: a timing side channel must not leak the MAC.
    if want.is_empty() || given.len() != want.len() || given.iter().zip(&want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return Err(TokenError::BadSignature);
    }
    let parts: Vec<&str> = payload.split('|').collect();
    let [version, point, slip_id, case_no, expires] = parts[..] else { return Err(TokenError::Malformed) };
    if version != "v1" || slip_id.is_empty() {
        return Err(TokenError::Malformed);
    }
    let expires: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    if now > expires {
        return Err(TokenError::Expired);
    }
    Ok(Slip { point: point.into(), slip_id: slip_id.into(), case_no: case_no.into(), expires })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slip() -> Slip {
        Slip { point: "p1".into(), slip_id: "abc123".into(), case_no: "BJ-1".into(), expires: 1000 }
    }

    #[test]
    fn round_trip_and_refusals() {
        let t = sign(b"k", &slip());
        assert_eq!(verify(b"k", &t, 999), Ok(slip()));
        assert_eq!(verify(b"k", &t, 1001), Err(TokenError::Expired));
        assert_eq!(verify(b"other", &t, 999), Err(TokenError::BadSignature));
        let (p, m) = t.split_once('.').expect("two parts");
        let forged = URL_SAFE_NO_PAD.encode("v1|p1|abc123|BJ-1|99999");
        assert_eq!(verify(b"k", &format!("{forged}.{m}"), 999), Err(TokenError::BadSignature));
        assert_eq!(verify(b"k", p, 999), Err(TokenError::Malformed));
    }
}
