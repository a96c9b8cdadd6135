//! Opaque bearer tokens: `tsr_<kind>_<body><checksum>`, and for personal
//! and machine tokens `tsr_<kind>_<env>_<body><checksum>`.
//!
//! - `kind` tells a human or a secret scanner what leaked (`pat`, `mt`,
//!   `rt`, `bt`, `ab` agent bootstrap, `ra` registration access).
//! - `env` (personal and machine tokens; optional on agent bootstrap
//!   tokens) is the environment label the token was made for, 1 to 16 lowercase letters and digits: `prod` in a
//!   leaked token's prefix tells the finder how bad the leak is.
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
/// The longest environment label.
pub const ENV_MAX_LEN: usize = 16;

/// Whether `env` is an environment label: 1 to 16 lowercase ASCII letters
/// and digits.
pub fn is_env_label(env: &str) -> bool {
    (1..=ENV_MAX_LEN).contains(&env.len())
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

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
    /// An agent's bootstrap token: RFC 7591 §3's initial access token.
    AgentBootstrap,
    /// RFC 7592 §3: an agent's registration access token.
    RegistrationAccess,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Pat => "pat",
            TokenKind::Machine => "mt",
            TokenKind::Refresh => "rt",
            TokenKind::Bootstrap => "bt",
            TokenKind::ClientSecret => "cs",
            TokenKind::AgentBootstrap => "ab",
            TokenKind::RegistrationAccess => "ra",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            TokenKind::Pat,
            TokenKind::Machine,
            TokenKind::Refresh,
            TokenKind::Bootstrap,
            TokenKind::AgentBootstrap,
            TokenKind::RegistrationAccess,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }

    /// Personal and machine tokens carry an environment label.
    pub fn has_env(self) -> bool {
        matches!(self, TokenKind::Pat | TokenKind::Machine)
    }

    /// An agent bootstrap token may carry an environment label.
    fn may_have_env(self) -> bool {
        self.has_env() || self == TokenKind::AgentBootstrap
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
    /// The environment label of a personal or machine token.
    pub env: Option<String>,
    pub lookup: String,
}

impl OpaqueToken {
    /// A new token of a kind without an environment label.
    pub fn generate(kind: TokenKind) -> Self {
        debug_assert!(!kind.has_env());
        Self::finish(format!("{PREFIX}{}_", kind.as_str()))
    }

    /// A new personal or machine token for `env` (an [`is_env_label`]).
    pub fn generate_for_env(kind: TokenKind, env: &str) -> Self {
        debug_assert!(kind.may_have_env() && is_env_label(env));
        Self::finish(format!("{PREFIX}{}_{env}_", kind.as_str()))
    }

    fn finish(mut text: String) -> Self {
        text.push_str(&random_base62(BODY_LEN));
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
        let labelled = kind.has_env() || (kind.may_have_env() && tail.contains('_'));
        let (env, tail) = if labelled {
            let (env, tail) = tail.split_once('_').ok_or(TokenFormatError::NotTessera)?;
            if !is_env_label(env) {
                return Err(TokenFormatError::NotTessera);
            }
            (Some(env.to_owned()), tail)
        } else {
            (None, tail)
        };
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
            env,
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

/// A regular expression a secret scanner can use for personal and machine
/// tokens (the README gives it too); the checksum then tells a real
/// token from a lookalike offline: CRC32 (IEEE) of everything before the
/// last six characters, as six base62 digits, most significant first.
pub const SCANNER_PATTERN: &str = r"\btsr_(pat|mt)_[a-z0-9]{1,16}_[A-Za-z0-9]{49}\b";

/// The same for agent bootstrap tokens, whose label is optional.
pub const BOOTSTRAP_SCANNER_PATTERN: &str = r"\btsr_ab_([a-z0-9]{1,16}_)?[A-Za-z0-9]{49}\b";

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
    fn personal_and_machine_tokens_carry_their_environment() {
        let token = OpaqueToken::generate_for_env(TokenKind::Pat, "prod");
        assert!(token.expose().starts_with("tsr_pat_prod_"));
        assert_eq!(token.expose().len(), 13 + BODY_LEN + CHECKSUM_LEN);
        let parsed = token.parse().unwrap();
        assert_eq!(parsed.kind, TokenKind::Pat);
        assert_eq!(parsed.env.as_deref(), Some("prod"));
        assert_eq!(parsed.lookup, token.expose()[13..25]);

        let machine = OpaqueToken::generate_for_env(TokenKind::Machine, "dev2");
        assert!(machine.expose().starts_with("tsr_mt_dev2_"));
        assert_eq!(machine.parse().unwrap().env.as_deref(), Some("dev2"));

        // The label is under the checksum: another label is a typo.
        let relabelled = token.expose().replacen("_prod_", "_dev0_", 1);
        assert_eq!(
            OpaqueToken::from_presented(&relabelled).parse(),
            Err(TokenFormatError::BadChecksum)
        );
        // A personal token without a label is not a token at all.
        let unlabelled = token.expose().replacen("prod_", "", 1);
        assert_eq!(
            OpaqueToken::from_presented(&unlabelled).parse(),
            Err(TokenFormatError::NotTessera)
        );
        assert!(is_env_label("staging") && is_env_label("eu1"));
        for bad in ["", "Prod", "pr-od", "seventeen-chars-x", "pr_od"] {
            assert!(!is_env_label(bad), "{bad}");
        }
    }

    #[test]
    fn scanner_pattern_matches_generated_tokens() {
        let pattern = regex::Regex::new(SCANNER_PATTERN).unwrap();
        for kind in [TokenKind::Pat, TokenKind::Machine] {
            let token = OpaqueToken::generate_for_env(kind, "staging");
            assert!(pattern.is_match(token.expose()), "{}", kind.as_str());
        }
        assert!(!pattern.is_match("tsr_pat_Prod_abc"));
    }

    #[test]
    fn agent_bootstrap_tokens_may_carry_an_environment() {
        let pattern = regex::Regex::new(BOOTSTRAP_SCANNER_PATTERN).unwrap();
        let plain = OpaqueToken::generate(TokenKind::AgentBootstrap);
        assert!(plain.expose().starts_with("tsr_ab_"));
        assert_eq!(plain.parse().unwrap().env, None);
        let labelled = OpaqueToken::generate_for_env(TokenKind::AgentBootstrap, "prod");
        assert!(labelled.expose().starts_with("tsr_ab_prod_"));
        let parsed = labelled.parse().unwrap();
        assert_eq!(parsed.kind, TokenKind::AgentBootstrap);
        assert_eq!(parsed.env.as_deref(), Some("prod"));
        assert!(pattern.is_match(plain.expose()) && pattern.is_match(labelled.expose()));
        // A registration access token has no label.
        let registration = OpaqueToken::generate(TokenKind::RegistrationAccess);
        assert_eq!(
            registration.parse().unwrap().kind,
            TokenKind::RegistrationAccess
        );
    }

    #[test]
    fn digest_is_keyed_and_debug_is_redacted() {
        let token = OpaqueToken::generate_for_env(TokenKind::Pat, "dev");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k1");
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"k2");
        let stored = token.digest(&key);
        assert!(token.matches(&key, &stored));
        assert!(!token.matches(&other, &stored));
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
