//! Trust policy conditions on a token's claims (issue 9 item 2), compiled
//! once per policy load and evaluated on the token hot path.
//!
//! - Every condition must hold; a missing claim fails.
//! - Claims are compared as strings: numbers and booleans as JSON writes
//!   them (`123`, `true`); null, arrays and objects fail.
//! - Exact: the whole value, byte for byte (or Unicode case-insensitive).
//! - Glob, anchored: `*` is any run without `/` or `:` (one path segment;
//!   `:` separates the parts of GitHub's `sub`), `**` is anything, `?` one
//!   character other than `/` and `:`; everything else is literal. So
//!   `org-*` never matches `org-evil/x`.
//! - Regex, anchored (`^(?:…)$`), Rust `regex` syntax: no backreferences or
//!   lookaround, so matching is linear in the claim's length, and the
//!   compiled size is capped so a huge pattern is refused, not built.
//!
//! What an evaluation reports goes to the audit log and an admin's
//! terminal, so every echoed value is bounded and escaped ([`bounded`]).

use std::borrow::Cow;
use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::model::{Condition, MatchKind};

/// Claim names are JWT member names; none legitimately comes close.
pub const MAX_CLAIM_LEN: usize = 255;
/// Values and patterns.
pub const MAX_VALUE_LEN: usize = 1024;
/// The compiled size cap of one pattern (`RegexBuilder::size_limit`).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// How much of a value a report echoes, in characters.
const ECHO_CHARS: usize = 200;

/// The conditions of one policy, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledConditions {
    conditions: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    claim: Box<str>,
    test: Test,
    /// What reports call this condition, rendered once.
    rendered: String,
}

#[derive(Debug, Clone)]
enum Test {
    /// Case-sensitive exact match: a byte comparison.
    Exact(Box<str>),
    /// Globs, regexes, and case-insensitive exact matches (an escaped
    /// literal), all anchored.
    Pattern(Regex),
}

/// The outcome of one check, for `trust test` and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConditionCheck {
    /// E.g. `ref ~ glob "refs/heads/*"`.
    pub condition: String,
    pub passed: bool,
    /// Why: `matched`, `claim missing`, `got "refs/heads/dev"`.
    pub detail: String,
}

/// A condition that cannot be compiled: which one (0-based, as stored) and
/// why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub index: usize,
    /// The condition as reports render it, escaped and bounded.
    pub condition: String,
    pub reason: String,
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "condition {} ({}): {}",
            self.index + 1,
            self.condition,
            self.reason
        )
    }
}

impl std::error::Error for ConditionError {}

impl CompiledConditions {
    /// Checks and compiles each condition; the first bad one is the error.
    pub fn compile(conditions: &[Condition]) -> Result<Self, ConditionError> {
        let conditions = conditions
            .iter()
            .enumerate()
            .map(|(index, c)| {
                compile_one(c).map_err(|reason| ConditionError {
                    index,
                    condition: render(c),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(CompiledConditions { conditions })
    }

    /// Whether every condition holds, stopping at the first that fails and
    /// building no report: the exchange's fast path.
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        self.conditions
            .iter()
            .all(|c| claim_text(claims.get(&*c.claim)).is_ok_and(|v| c.test.is_match(&v)))
    }

    /// Every condition's outcome, in order.
    pub fn evaluate(&self, claims: &Map<String, Value>) -> Vec<ConditionCheck> {
        self.conditions
            .iter()
            .map(|c| {
                let (passed, detail) = match claim_text(claims.get(&*c.claim)) {
                    Err(why) => (false, why.to_owned()),
                    Ok(value) if c.test.is_match(&value) => (true, "matched".to_owned()),
                    Ok(value) => (false, format!("got {:?}", bounded(&value))),
                };
                ConditionCheck {
                    condition: c.rendered.clone(),
                    passed,
                    detail,
                }
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.conditions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }
}

impl Test {
    fn is_match(&self, value: &str) -> bool {
        match self {
            Test::Exact(expected) => value == &**expected,
            Test::Pattern(regex) => regex.is_match(value),
        }
    }
}

/// A claim as the string conditions compare: strings as they are, numbers
/// and booleans as JSON writes them.
pub(crate) fn claim_text(value: Option<&Value>) -> Result<Cow<'_, str>, &'static str> {
    match value {
        None => Err("claim missing"),
        Some(Value::String(s)) => Ok(Cow::Borrowed(s)),
        Some(Value::Number(n)) => Ok(Cow::Owned(n.to_string())),
        Some(Value::Bool(true)) => Ok(Cow::Borrowed("true")),
        Some(Value::Bool(false)) => Ok(Cow::Borrowed("false")),
        Some(_) => Err("claim is not a string, number or boolean"),
    }
}

/// At most [`ECHO_CHARS`] characters of `text`, marked when cut. Format it
/// with `{:?}`, which quotes it and escapes control and other
/// non-printable characters, so a claim cannot forge log lines or drive a
/// terminal.
pub fn bounded(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(ECHO_CHARS) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
    }
}

fn compile_one(c: &Condition) -> Result<Compiled, String> {
    if c.claim.is_empty() {
        return Err("the claim name is empty".into());
    }
    if c.claim.len() > MAX_CLAIM_LEN {
        return Err(format!(
            "the claim name is longer than {MAX_CLAIM_LEN} bytes"
        ));
    }
    if !is_claim_name(&c.claim) {
        return Err("a claim name is printable ASCII without spaces".into());
    }
    if c.value.len() > MAX_VALUE_LEN {
        return Err(format!("the value is longer than {MAX_VALUE_LEN} bytes"));
    }
    let test = match (c.kind, c.ignore_case) {
        (MatchKind::Exact, false) => Test::Exact(c.value.clone().into_boxed_str()),
        (MatchKind::Exact, true) => Test::Pattern(build(&regex::escape(&c.value), true)?),
        (MatchKind::Glob, _) => Test::Pattern(build(&glob_to_regex(&c.value), c.ignore_case)?),
        (MatchKind::Regex, _) => {
            // Alone first: a pattern such as `a)|(.*` is refused rather
            // than escaping the anchoring group it is wrapped in.
            build_unanchored(&c.value, c.ignore_case)?;
            Test::Pattern(build(&c.value, c.ignore_case)?)
        }
    };
    Ok(Compiled {
        claim: c.claim.clone().into_boxed_str(),
        test,
        rendered: render(c),
    })
}

/// Printable ASCII without spaces, so it renders as it is.
fn is_claim_name(claim: &str) -> bool {
    !claim.is_empty()
        && claim.len() <= MAX_CLAIM_LEN
        && claim.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// E.g. `repository_id = "123"`, `sub ~ regex "…" (ignore case)`.
fn render(c: &Condition) -> String {
    let operator = match c.kind {
        MatchKind::Exact => "=",
        MatchKind::Glob => "~ glob",
        MatchKind::Regex => "~ regex",
    };
    let case = if c.ignore_case { " (ignore case)" } else { "" };
    let value = bounded(&c.value);
    if is_claim_name(&c.claim) {
        format!("{} {operator} {value:?}{case}", c.claim)
    } else {
        // Only in a compile error: quoted, since it is not a name.
        format!("{:?} {operator} {value:?}{case}", bounded(&c.claim))
    }
}

/// An anchored glob as a regex: `**` anything, `*` a run without `/` or
/// `:`, `?` one such character, every other character literal.
fn glob_to_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() * 2);
    let mut chars = glob.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str("(?s:.)*");
            }
            '*' => out.push_str("[^/:]*"),
            '?' => out.push_str("[^/:]"),
            _ => {
                let mut buf = [0; 4];
                out.push_str(&regex::escape(ch.encode_utf8(&mut buf)));
            }
        }
    }
    out
}

fn build(pattern: &str, ignore_case: bool) -> Result<Regex, String> {
    build_unanchored(&format!("^(?:{pattern})$"), ignore_case)
}

fn build_unanchored(pattern: &str, ignore_case: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => format!(
                "the pattern is too complex (compiled size over {} KiB)",
                REGEX_SIZE_LIMIT / 1024
            ),
            regex::Error::Syntax(text) => {
                // The parser's message spans lines (the pattern, a caret,
                // then `error: …`); keep the last line, one line for logs.
                let last = text.lines().rev().find(|l| !l.trim().is_empty());
                let reason = last.unwrap_or("invalid").trim();
                let reason = reason.strip_prefix("error: ").unwrap_or(reason);
                format!("bad regex: {reason}")
            }
            _ => "bad regex".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(claim: &str, kind: MatchKind, value: &str, ignore_case: bool) -> Condition {
        Condition {
            claim: claim.into(),
            kind,
            value: value.into(),
            ignore_case,
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// Whether one condition holds for `{"c": value}`, checking that the
    /// fast path and the report agree.
    fn holds(kind: MatchKind, pattern: &str, ignore_case: bool, value: Value) -> bool {
        let compiled =
            CompiledConditions::compile(&[cond("c", kind, pattern, ignore_case)]).unwrap();
        let claims = claims(json!({ "c": value }));
        let checks = compiled.evaluate(&claims);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].passed, compiled.matches(&claims));
        checks[0].passed
    }

    fn glob(pattern: &str, value: &str) -> bool {
        holds(MatchKind::Glob, pattern, false, json!(value))
    }

    #[test]
    fn globs_are_anchored_and_segment_bound() {
        assert!(glob("org-*", "org-repo"));
        assert!(!glob("org-*", "org-evil/x"));
        assert!(!glob("*", "a/b"));
        assert!(!glob("*", "a:b"));
        assert!(glob("*", ""));
        assert!(glob("**", "a/b:c"));
        assert!(glob("**", "a\nb"));
        assert!(glob("refs/heads/*", "refs/heads/main"));
        assert!(!glob("refs/heads/*", "refs/heads/feature/x"));
        assert!(glob("refs/heads/**", "refs/heads/feature/x"));
        assert!(!glob("refs/heads/*", "xrefs/heads/main"));
        assert!(!glob("main", "main2"));
        assert!(glob(
            "repo:org/*:ref:refs/heads/*",
            "repo:org/r:ref:refs/heads/main"
        ));
        assert!(!glob(
            "repo:org/*:ref:refs/heads/*",
            "repo:org/r:environment:x:ref:refs/heads/main"
        ));
        assert!(glob("v?", "v1"));
        assert!(!glob("v?", "v12"));
        assert!(!glob("a?b", "a/b"));
        assert!(glob("é*", "été"));
    }

    #[test]
    fn glob_metacharacters_are_literal() {
        assert!(glob("a.b", "a.b"));
        assert!(!glob("a.b", "axb"));
        for literal in ["a+", "(a)", "[ab]", "a|b", "^a$", "a{2}", r"a\d", "$x"] {
            assert!(glob(literal, literal), "{literal}");
        }
        assert!(!glob("a|b", "a"));
        assert!(!glob("[ab]", "a"));
        assert!(!glob(r"a\d", "a1"));
    }

    #[test]
    fn regexes_are_anchored() {
        let regex = |p: &str, v: &str| holds(MatchKind::Regex, p, false, json!(v));
        assert!(regex("main", "main"));
        assert!(!regex("main", "xmainx"));
        assert!(!regex("main", "main\n"));
        assert!(regex("a|ab", "ab"));
        assert!(!regex("a|b", "ab"));
        assert!(regex("refs/(heads|tags)/v[0-9]+", "refs/tags/v12"));
        assert!(!regex("(?m)main$", "main\nx"));
        // A pattern that would close the anchoring group is refused.
        for escape in ["main)|(.*", "a)|(?:.*", ")("] {
            let err = CompiledConditions::compile(&[cond("c", MatchKind::Regex, escape, false)]);
            assert!(err.is_err(), "{escape}");
        }
    }

    #[test]
    fn exact_is_whole_and_byte_for_byte() {
        let exact = |p: &str, v: Value| holds(MatchKind::Exact, p, false, v);
        assert!(exact("refs/heads/main", json!("refs/heads/main")));
        assert!(!exact("refs/heads/main", json!("refs/heads/main2")));
        assert!(!exact("Main", json!("main")));
        assert!(!exact("a.b", json!("axb")));
        assert!(exact("", json!("")));
    }

    #[test]
    fn numbers_and_booleans_compare_as_strings() {
        assert!(holds(MatchKind::Exact, "123", false, json!(123)));
        assert!(holds(MatchKind::Exact, "123", false, json!("123")));
        assert!(!holds(MatchKind::Exact, "123", false, json!(1234)));
        assert!(holds(MatchKind::Exact, "true", false, json!(true)));
        assert!(holds(MatchKind::Exact, "false", false, json!(false)));
        assert!(!holds(MatchKind::Exact, "true", false, json!(false)));
        assert!(holds(MatchKind::Exact, "-1.5", false, json!(-1.5)));
        assert!(holds(MatchKind::Glob, "12*", false, json!(12345)));
        assert!(holds(MatchKind::Regex, "[0-9]+", false, json!(42)));
        for bad in [json!(null), json!(["123"]), json!({"a": "123"})] {
            assert!(!holds(MatchKind::Exact, "123", false, bad.clone()));
            assert!(!holds(MatchKind::Regex, ".*", false, bad));
        }
    }

    #[test]
    fn ignore_case_is_per_condition() {
        assert!(holds(
            MatchKind::Exact,
            "Octo-Org/Repo",
            true,
            json!("octo-org/REPO")
        ));
        assert!(holds(MatchKind::Exact, "ÉTÉ", true, json!("été")));
        assert!(!holds(MatchKind::Exact, "a.b", true, json!("AXB")));
        assert!(holds(MatchKind::Glob, "ORG-*", true, json!("org-x")));
        assert!(!holds(MatchKind::Glob, "ORG-*", false, json!("org-x")));
        assert!(holds(MatchKind::Regex, "MAIN", true, json!("main")));
        assert!(!holds(MatchKind::Regex, "MAIN", false, json!("main")));
        let both = CompiledConditions::compile(&[
            cond("a", MatchKind::Exact, "X", true),
            cond("b", MatchKind::Exact, "X", false),
        ])
        .unwrap();
        let checks = both.evaluate(&claims(json!({"a": "x", "b": "x"})));
        assert!(checks[0].passed);
        assert!(!checks[1].passed);
    }

    #[test]
    fn every_condition_must_hold_and_missing_claims_fail() {
        let compiled = CompiledConditions::compile(&[
            cond("repository_id", MatchKind::Exact, "42", false),
            cond("ref", MatchKind::Glob, "refs/heads/*", false),
            cond("environment", MatchKind::Exact, "prod", false),
        ])
        .unwrap();
        let token = claims(json!({"repository_id": "42", "ref": "refs/heads/dev", "env": "prod"}));
        assert!(!compiled.matches(&token));
        let checks = compiled.evaluate(&token);
        assert_eq!(
            checks,
            [
                ConditionCheck {
                    condition: r#"repository_id = "42""#.into(),
                    passed: true,
                    detail: "matched".into(),
                },
                ConditionCheck {
                    condition: r#"ref ~ glob "refs/heads/*""#.into(),
                    passed: true,
                    detail: "matched".into(),
                },
                ConditionCheck {
                    condition: r#"environment = "prod""#.into(),
                    passed: false,
                    detail: "claim missing".into(),
                },
            ]
        );
        let token =
            claims(json!({"repository_id": "42", "ref": "refs/heads/a/b", "environment": "prod"}));
        assert_eq!(
            compiled.evaluate(&token)[1].detail,
            r#"got "refs/heads/a/b""#
        );
        assert!(CompiledConditions::compile(&[]).unwrap().matches(&token));
    }

    #[test]
    fn reports_are_bounded_and_escaped() {
        let compiled = CompiledConditions::compile(&[
            cond("sub", MatchKind::Regex, "repo:.*", true),
            cond("x", MatchKind::Exact, "a", false),
        ])
        .unwrap();
        let long = format!("\u{1b}[31m\n\u{202e}{}", "é".repeat(5000));
        let checks = compiled.evaluate(&claims(json!({"sub": long, "x": ["a"]})));
        assert_eq!(
            checks[0].condition,
            r#"sub ~ regex "repo:.*" (ignore case)"#
        );
        let detail = &checks[0].detail;
        assert!(
            detail.starts_with(r#"got "\u{1b}[31m\n\u{202e}éé"#),
            "{detail}"
        );
        assert!(detail.ends_with("…\""), "{detail}");
        assert!(detail.chars().count() < 240, "{detail}");
        assert!(!detail.chars().any(char::is_control));
        assert_eq!(checks[1].detail, "claim is not a string, number or boolean");
    }

    #[test]
    fn bad_conditions_are_refused_with_a_reason() {
        let refused = |c: Condition| CompiledConditions::compile(&[c]).unwrap_err();
        let err = refused(cond("ref", MatchKind::Regex, "(unclosed", false));
        assert!(err.reason.starts_with("bad regex: "), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
        assert!(
            refused(cond("", MatchKind::Exact, "x", false))
                .reason
                .contains("empty")
        );
        assert!(
            refused(cond("a b", MatchKind::Exact, "x", false))
                .reason
                .contains("printable")
        );
        assert!(
            refused(cond("a\u{0}", MatchKind::Exact, "x", false))
                .reason
                .contains("printable")
        );
        assert!(
            refused(cond("é", MatchKind::Exact, "x", false))
                .reason
                .contains("printable")
        );
        assert!(
            refused(cond(&"c".repeat(256), MatchKind::Exact, "x", false))
                .reason
                .contains("255")
        );
        assert!(
            CompiledConditions::compile(&[cond(&"c".repeat(255), MatchKind::Exact, "x", false)])
                .is_ok()
        );
        for kind in [MatchKind::Exact, MatchKind::Glob, MatchKind::Regex] {
            assert!(
                refused(cond("c", kind, &"a".repeat(1025), false))
                    .reason
                    .contains("1024")
            );
            assert!(
                CompiledConditions::compile(&[cond("c", kind, &"a".repeat(1024), false)]).is_ok()
            );
        }
        // Within the length cap, but huge once compiled.
        let err = refused(cond("c", MatchKind::Regex, r"(\w{1000}){1000}", false));
        assert!(err.reason.contains("too complex"), "{err}");
        // Which condition, counted from 1 in the message.
        let err = CompiledConditions::compile(&[
            cond("ok", MatchKind::Exact, "x", false),
            cond("ref", MatchKind::Regex, "[", false),
        ])
        .unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.condition, r#"ref ~ regex "[""#);
        assert!(
            err.to_string()
                .starts_with(r#"condition 2 (ref ~ regex "["): bad regex: "#),
            "{err}"
        );
        let err = refused(cond("a\nb", MatchKind::Exact, "x", false));
        assert_eq!(err.condition, r#""a\nb" = "x""#);
        // Linear-time syntax only: no backreferences, no look-around.
        for (pattern, reason) in [
            ("(unclosed", "bad regex: unclosed group"),
            ("[a", "bad regex: unclosed character class"),
            (r"(?<n>a)\k<n>", "bad regex: unrecognized escape sequence"),
            ("(?=a)", "bad regex: look-around"),
        ] {
            let err = refused(cond("c", MatchKind::Regex, pattern, false));
            assert!(err.reason.starts_with(reason), "{pattern}: {err}");
        }
    }

    #[test]
    fn matching_is_linear_in_the_claim() {
        // Catastrophic for a backtracking engine; linear here.
        let long = "a".repeat(100_000);
        let started = std::time::Instant::now();
        assert!(!holds(
            MatchKind::Regex,
            "(a|aa)*(a*)*b",
            false,
            json!(long)
        ));
        assert!(!holds(MatchKind::Glob, "*a*a*a*a*a*b", false, json!(long)));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn compiled_conditions_are_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledConditions>();
    }
}
