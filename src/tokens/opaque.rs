//! Opaque bearer tokens: `tsr_<kind>_<body><checksum>`.
//!
//! - `kind` tells a human or a secret scanner what leaked (`pat`, `mt`,
//!   `rt`, `bt`).
//! - `body` is 43 base62 characters: 256 bits from the OS.
//! - `checksum` is CRC32 of everything before it, 6 base62 characters, so
//!   a scanner can reject a typo offline (the same idea as GitHub's tokens).
//!
//! Only a keyed HMAC-SHA256 digest is stored. The first 12 characters of
//! the body are the public `lookup` that finds the row; the digest is then
//! compared in constant time. A slow KDF is not needed: the input already
//! has 256 bits of entropy (DESIGN.md).

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::random::{BASE62, random_base62};

const PREFIX: &str = "tsr_";
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
const LOOKUP_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Personal access token.
    Pat,
    /// Machine token.
    Machine,
    /// Refresh token.
    Refresh,
    /// Bootstrap (administrator) token.
    Bootstrap,
    /// OAuth client secret.
    ClientSecret,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Pat => "pat",
            TokenKind::Machine => "mt",
            TokenKind::Refresh => "rt",
            TokenKind::Bootstrap => "bt",
            TokenKind::ClientSecret => "cs",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            TokenKind::Pat,
            TokenKind::Machine,
            TokenKind::Refresh,
            TokenKind::Bootstrap,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// A token's cleartext. `Debug` never shows it; it is wiped on drop.
#[derive(Clone)]
pub struct OpaqueToken(Zeroizing<String>);

impl std::fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpaqueToken(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("the token is not a Tessera token")]
    NotTessera,
    #[error("the token's checksum does not match: it was mistyped or truncated")]
    BadChecksum,
}

/// What can be read from a well-formed token without the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken {
    pub kind: TokenKind,
    pub lookup: String,
}

impl OpaqueToken {
    pub fn generate(kind: TokenKind) -> Self {
        let mut text = format!("{PREFIX}{}_{}", kind.as_str(), random_base62(BODY_LEN));
        let checksum = checksum(&text);
        text.push_str(&checksum);
        OpaqueToken(Zeroizing::new(text))
    }

    pub fn from_presented(text: &str) -> Self {
        OpaqueToken(Zeroizing::new(text.to_owned()))
    }

    /// The cleartext, for the one place that shows it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks prefix, kind, length, alphabet and checksum.
    pub fn parse(&self) -> Result<ParsedToken, TokenFormatError> {
        let rest = self
            .0
            .strip_prefix(PREFIX)
            .ok_or(TokenFormatError::NotTessera)?;
        let (kind, tail) = rest.split_once('_').ok_or(TokenFormatError::NotTessera)?;
        let kind = TokenKind::parse(kind).ok_or(TokenFormatError::NotTessera)?;
        if tail.len() != BODY_LEN + CHECKSUM_LEN || !tail.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(TokenFormatError::NotTessera);
        }
        let split = self.0.len() - CHECKSUM_LEN;
        let expected = checksum(&self.0[..split]);
        if expected
            .as_bytes()
            .ct_eq(self.0[split..].as_bytes())
            .unwrap_u8()
            != 1
        {
            return Err(TokenFormatError::BadChecksum);
        }
        Ok(ParsedToken {
            kind,
            lookup: tail[..LOOKUP_LEN].to_owned(),
        })
    }

    /// The keyed digest that is stored in place of the token.
    pub fn digest(&self, key: &hmac::Key) -> Vec<u8> {
        hmac::sign(key, self.0.as_bytes()).as_ref().to_vec()
    }

    /// Constant-time comparison against a stored digest.
    pub fn matches(&self, key: &hmac::Key, stored: &[u8]) -> bool {
        self.digest(key).ct_eq(stored).unwrap_u8() == 1
    }
}

fn checksum(text: &str) -> String {
    let mut value = crc32fast::hash(text.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_typos_do_not() {
        let token = OpaqueToken::generate(TokenKind::Bootstrap);
        assert!(token.expose().starts_with("tsr_bt_"));
        assert_eq!(token.expose().len(), 7 + BODY_LEN + CHECKSUM_LEN);
        let parsed = token.parse().unwrap();
        assert_eq!(parsed.kind, TokenKind::Bootstrap);

        let mut typo = token.expose().to_owned();
        let last = typo.pop().unwrap();
        typo.push(if last == 'a' { 'b' } else { 'a' });
        assert_eq!(
            OpaqueToken::from_presented(&typo).parse(),
            Err(TokenFormatError::BadChecksum)
        );
        assert_eq!(
            OpaqueToken::from_presented("Bearer xyz").parse(),
            Err(TokenFormatError::NotTessera)
        );
    }

    #[test]
    fn digest_is_keyed_and_debug_is_redacted() {
        let token = OpaqueToken::generate(TokenKind::Pat);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k1");
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"k2");
        let stored = token.digest(&key);
        assert!(token.matches(&key, &stored));
        assert!(!token.matches(&other, &stored));
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
