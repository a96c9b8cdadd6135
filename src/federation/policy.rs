//! One trust policy, compiled, evaluated against a verified token's claims
//! (issue 9 item 2). The caller has already run [`super::verify`] (the
//! signature, `iss`, times, `jti`) and picked the policies of the token's
//! issuer; this decides which of them, if any, the claims satisfy.
//!
//! The checks, in order, each reported:
//!
//! 1. `aud` contains the policy's audience (RFC 7519 §4.1.3: `aud` is a
//!    string or an array of strings, compared exactly);
//! 2. unless the policy allows several, `aud` has exactly one value: a
//!    token minted for several relying parties could be replayed by any
//!    of them;
//! 3. `event_name`, when the token has one, is not a refused event (the
//!    GitHub preset refuses `pull_request_target`, the "pwn request");
//! 4. each condition ([`super::conditions`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::conditions::{CompiledConditions, ConditionCheck, ConditionError, bounded, claim_text};
use super::model::TrustPolicy;

/// How many `aud` values a report lists.
const ECHO_AUDIENCES: usize = 5;

/// A policy with its conditions compiled, built once per policy load.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub policy: TrustPolicy,
    conditions: CompiledConditions,
}

/// What one policy made of one token, for `trust test` and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyEvaluation {
    /// The policy's name.
    pub policy: String,
    pub checks: Vec<ConditionCheck>,
}

impl PolicyEvaluation {
    /// Whether every check passed: the policy matches.
    pub fn matched(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// How many checks passed, to name the closest miss.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }

    /// The first failed check, for a one-line audit reason.
    pub fn first_failure(&self) -> Option<&ConditionCheck> {
        self.checks.iter().find(|c| !c.passed)
    }
}

/// The evaluation that came closest without matching: the most checks
/// passed, then the fewest failed, then the first. `None` when there is
/// no miss (no evaluations, or only matches).
pub fn closest_miss(evaluations: &[PolicyEvaluation]) -> Option<&PolicyEvaluation> {
    evaluations
        .iter()
        .filter(|e| !e.matched())
        .rev()
        .max_by_key(|e| (e.passed(), std::cmp::Reverse(e.failed())))
}

impl CompiledPolicy {
    pub fn compile(policy: TrustPolicy) -> Result<Self, ConditionError> {
        let conditions = CompiledConditions::compile(&policy.conditions)?;
        Ok(CompiledPolicy { policy, conditions })
    }

    /// Whether the claims satisfy the policy, stopping at the first failed
    /// check and building no report: the exchange's fast path. Agrees with
    /// [`CompiledPolicy::evaluate`]'s [`PolicyEvaluation::matched`].
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        let Ok(aud) = Audiences::of(claims) else {
            return false;
        };
        aud.contains(&self.policy.audience)
            && (self.policy.allow_multiple_audiences || aud.len() == 1)
            && self.event_allowed(claims).is_ok()
            && self.conditions.matches(claims)
    }

    /// Every check's outcome, in the order of the module documentation.
    pub fn evaluate(&self, claims: &Map<String, Value>) -> PolicyEvaluation {
        let mut checks = Vec::with_capacity(3 + self.conditions.len());
        let aud = Audiences::of(claims);
        checks.push(ConditionCheck {
            condition: format!("aud contains {:?}", bounded(&self.policy.audience)),
            passed: aud
                .as_ref()
                .is_ok_and(|a| a.contains(&self.policy.audience)),
            detail: match &aud {
                Err(why) => (*why).to_owned(),
                Ok(a) if a.contains(&self.policy.audience) => "matched".to_owned(),
                Ok(a) => format!("got {}", a.render()),
            },
        });
        if !self.policy.allow_multiple_audiences {
            checks.push(ConditionCheck {
                condition: "aud has one value".to_owned(),
                passed: aud.as_ref().is_ok_and(|a| a.len() == 1),
                detail: match &aud {
                    Err(why) => (*why).to_owned(),
                    Ok(a) if a.len() == 1 => "one value".to_owned(),
                    Ok(a) => format!("{} values", a.len()),
                },
            });
        }
        if !self.policy.refused_events.is_empty() {
            let refused: Vec<_> = self
                .policy
                .refused_events
                .iter()
                .map(|e| bounded(e))
                .collect();
            let (passed, detail) = match self.event_allowed(claims) {
                Ok(None) => (true, "claim absent".to_owned()),
                Ok(Some(event)) => (true, format!("got {:?}", bounded(&event))),
                Err(EventRefused::Refused(event)) => {
                    (false, format!("refused event {:?}", bounded(&event)))
                }
                Err(EventRefused::NotText(why)) => (false, why.to_owned()),
            };
            checks.push(ConditionCheck {
                condition: format!("event_name not in {refused:?}"),
                passed,
                detail,
            });
        }
        checks.extend(self.conditions.evaluate(claims));
        PolicyEvaluation {
            policy: self.policy.name.clone(),
            checks,
        }
    }

    /// `Ok` with the event, if any, when it is not refused. A token
    /// without `event_name` (GitLab's, or another issuer's) passes.
    fn event_allowed<'c>(
        &self,
        claims: &'c Map<String, Value>,
    ) -> Result<Option<std::borrow::Cow<'c, str>>, EventRefused<'c>> {
        if self.policy.refused_events.is_empty() {
            return Ok(None);
        }
        let Some(value) = claims.get("event_name") else {
            return Ok(None);
        };
        let event = claim_text(Some(value)).map_err(EventRefused::NotText)?;
        if self.policy.refused_events.iter().any(|e| *e == event) {
            return Err(EventRefused::Refused(event));
        }
        Ok(Some(event))
    }
}

enum EventRefused<'c> {
    Refused(std::borrow::Cow<'c, str>),
    NotText(&'static str),
}

/// A token's `aud`: one string or an array of strings (RFC 7519 §4.1.3).
enum Audiences<'c> {
    One(&'c str),
    Many(&'c [Value]),
}

impl<'c> Audiences<'c> {
    fn of(claims: &'c Map<String, Value>) -> Result<Self, &'static str> {
        const NOT_AUDIENCES: &str = "aud is not a string or an array of strings";
        match claims.get("aud") {
            None => Err("claim missing"),
            Some(Value::String(one)) => Ok(Audiences::One(one)),
            Some(Value::Array(many)) if many.iter().all(Value::is_string) => {
                Ok(Audiences::Many(many))
            }
            Some(_) => Err(NOT_AUDIENCES),
        }
    }

    fn contains(&self, audience: &str) -> bool {
        match self {
            Audiences::One(one) => *one == audience,
            Audiences::Many(many) => many.iter().any(|v| v.as_str() == Some(audience)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Audiences::One(_) => 1,
            Audiences::Many(many) => many.len(),
        }
    }

    /// Bounded and escaped: at most [`ECHO_AUDIENCES`] values, each cut.
    fn render(&self) -> String {
        match self {
            Audiences::One(one) => format!("{:?}", bounded(one)),
            Audiences::Many(many) => {
                let shown: Vec<_> = many
                    .iter()
                    .take(ECHO_AUDIENCES)
                    .filter_map(Value::as_str)
                    .map(bounded)
                    .collect();
                let mut out = format!("{shown:?}");
                if many.len() > ECHO_AUDIENCES {
                    out.push_str(&format!(" and {} more", many.len() - ECHO_AUDIENCES));
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::model::{Condition, MatchKind};
    use crate::federation::presets::{
        GITHUB_ISSUER, GITHUB_REFUSED_EVENTS, GitHubRepo, github_conditions,
    };
    use serde_json::json;

    const AUD: &str = "https://tessera.example.com";

    fn github_policy() -> TrustPolicy {
        TrustPolicy {
            name: "deploy".into(),
            issuer: GITHUB_ISSUER.into(),
            audience: AUD.into(),
            allow_multiple_audiences: false,
            service_user: "svc-1".into(),
            scopes: vec!["deploy".into()],
            lifetime: 900,
            conditions: github_conditions(&GitHubRepo {
                repository: "octo-org/octo-repo".into(),
                repository_id: 42,
                owner_id: 7,
                git_ref: Some("refs/heads/main".into()),
                ..GitHubRepo::default()
            })
            .unwrap(),
            refused_events: GITHUB_REFUSED_EVENTS
                .iter()
                .map(|e| e.to_string())
                .collect(),
            name_only: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// GitHub-shaped claims (GitHub sends ids as strings).
    fn github_claims() -> Map<String, Value> {
        let Value::Object(claims) = json!({
            "iss": GITHUB_ISSUER,
            "aud": AUD,
            "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
            "repository": "octo-org/octo-repo",
            "repository_id": "42",
            "repository_owner_id": "7",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "event_name": "push",
            "run_id": "1234",
            "workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
            "job_workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
            "runner_environment": "github-hosted",
        }) else {
            unreachable!()
        };
        claims
    }

    fn evaluate(policy: &TrustPolicy, claims: &Map<String, Value>) -> PolicyEvaluation {
        let compiled = CompiledPolicy::compile(policy.clone()).unwrap();
        let evaluation = compiled.evaluate(claims);
        assert_eq!(evaluation.matched(), compiled.matches(claims));
        evaluation
    }

    fn failures(evaluation: &PolicyEvaluation) -> Vec<(&str, &str)> {
        evaluation
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| (c.condition.as_str(), c.detail.as_str()))
            .collect()
    }

    #[test]
    fn a_matching_token_passes_every_check_in_order() {
        let evaluation = evaluate(&github_policy(), &github_claims());
        assert!(evaluation.matched());
        assert_eq!(evaluation.policy, "deploy");
        let conditions: Vec<_> = evaluation
            .checks
            .iter()
            .map(|c| c.condition.as_str())
            .collect();
        assert_eq!(
            conditions,
            [
                r#"aud contains "https://tessera.example.com""#,
                "aud has one value",
                r#"event_name not in ["pull_request_target"]"#,
                r#"repository = "octo-org/octo-repo""#,
                r#"repository_id = "42""#,
                r#"repository_owner_id = "7""#,
                r#"ref = "refs/heads/main""#,
            ]
        );
        assert_eq!(evaluation.passed(), 7);
        assert_eq!(evaluation.failed(), 0);
        assert_eq!(evaluation.checks[2].detail, r#"got "push""#);
        assert!(evaluation.first_failure().is_none());
    }

    #[test]
    fn audience_must_be_contained_and_single() {
        let policy = github_policy();
        let mut claims = github_claims();
        claims.insert("aud".into(), json!("https://other.example.com"));
        let evaluation = evaluate(&policy, &claims);
        assert_eq!(
            failures(&evaluation),
            [(
                r#"aud contains "https://tessera.example.com""#,
                r#"got "https://other.example.com""#
            )]
        );

        claims.insert("aud".into(), json!([AUD, "https://other.example.com"]));
        let evaluation = evaluate(&policy, &claims);
        assert_eq!(failures(&evaluation), [("aud has one value", "2 values")]);
        let mut relaxed = policy.clone();
        relaxed.allow_multiple_audiences = true;
        let evaluation = evaluate(&relaxed, &claims);
        assert!(evaluation.matched());
        assert!(
            evaluation
                .checks
                .iter()
                .all(|c| c.condition != "aud has one value")
        );

        claims.insert("aud".into(), json!([AUD]));
        assert!(evaluate(&policy, &claims).matched());

        let many: Vec<String> = (0..8).map(|i| format!("a{i}")).collect();
        claims.insert("aud".into(), json!(many));
        let evaluation = evaluate(&relaxed, &claims);
        assert_eq!(
            failures(&evaluation)[0].1,
            r#"got ["a0", "a1", "a2", "a3", "a4"] and 3 more"#
        );

        for (aud, why) in [
            (
                json!([AUD, 1]),
                "aud is not a string or an array of strings",
            ),
            (
                json!({"a": AUD}),
                "aud is not a string or an array of strings",
            ),
            (json!(null), "aud is not a string or an array of strings"),
        ] {
            claims.insert("aud".into(), aud);
            let evaluation = evaluate(&relaxed, &claims);
            assert_eq!(
                failures(&evaluation),
                [(r#"aud contains "https://tessera.example.com""#, why)]
            );
        }
        claims.remove("aud");
        let evaluation = evaluate(&policy, &claims);
        assert_eq!(evaluation.failed(), 2);
        assert_eq!(evaluation.first_failure().unwrap().detail, "claim missing");

        // Exact: no prefix, case or trailing-slash leniency.
        for near in [
            "https://tessera.example.com/",
            "https://TESSERA.example.com",
            "https://tessera.example.co",
        ] {
            claims.insert("aud".into(), json!(near));
            assert!(!evaluate(&policy, &claims).matched(), "{near}");
        }
    }

    #[test]
    fn refused_events_are_refused_and_absent_events_pass() {
        let policy = github_policy();
        let mut claims = github_claims();
        claims.insert("event_name".into(), json!("pull_request_target"));
        let evaluation = evaluate(&policy, &claims);
        assert_eq!(
            failures(&evaluation),
            [(
                r#"event_name not in ["pull_request_target"]"#,
                r#"refused event "pull_request_target""#
            )]
        );
        // --allow-event pull_request_target: the policy refuses nothing.
        let mut allowing = policy.clone();
        allowing.refused_events.clear();
        let evaluation = evaluate(&allowing, &claims);
        assert!(evaluation.matched());
        assert_eq!(evaluation.checks.len(), 6);

        claims.insert("event_name".into(), json!(["pull_request_target"]));
        let evaluation = evaluate(&policy, &claims);
        assert_eq!(
            failures(&evaluation)[0].1,
            "claim is not a string, number or boolean"
        );
        claims.remove("event_name");
        let evaluation = evaluate(&policy, &claims);
        assert!(evaluation.matched());
        assert_eq!(evaluation.checks[2].detail, "claim absent");
    }

    #[test]
    fn each_condition_fails_on_its_own() {
        let policy = github_policy();
        for (claim, wrong) in [
            ("repository", json!("octo-org/other")),
            ("repository_id", json!("43")),
            ("repository_owner_id", json!("8")),
            ("ref", json!("refs/heads/dev")),
        ] {
            let mut claims = github_claims();
            claims.insert(claim.into(), wrong.clone());
            let evaluation = evaluate(&policy, &claims);
            assert_eq!(evaluation.failed(), 1, "{claim}");
            let failure = evaluation.first_failure().unwrap();
            assert!(failure.condition.starts_with(claim), "{failure:?}");
            assert_eq!(failure.detail, format!("got {wrong}"));
            claims.remove(claim);
            let evaluation = evaluate(&policy, &claims);
            assert_eq!(evaluation.first_failure().unwrap().detail, "claim missing");
        }
    }

    #[test]
    fn a_resurrected_repository_does_not_match() {
        // Same names, new ids: someone re-registered the organisation and
        // the repository after they were deleted.
        let mut claims = github_claims();
        claims.insert("repository_id".into(), json!("9001"));
        claims.insert("repository_owner_id".into(), json!("9002"));
        let evaluation = evaluate(&github_policy(), &claims);
        assert!(!evaluation.matched());
        assert_eq!(evaluation.failed(), 2);
    }

    #[test]
    fn the_closest_miss_is_named() {
        let mut other = github_policy();
        other.name = "other-repo".into();
        other.conditions[0].value = "octo-org/elsewhere".into();
        other.conditions[1].value = "1".into();
        let mut near = github_policy();
        near.name = "near".into();
        near.conditions.push(Condition {
            claim: "environment".into(),
            kind: MatchKind::Exact,
            value: "prod".into(),
            ignore_case: false,
        });
        let claims = github_claims();
        let evaluations = [evaluate(&other, &claims), evaluate(&near, &claims)];
        assert_eq!(closest_miss(&evaluations).unwrap().policy, "near");
        assert!(closest_miss(&[evaluate(&github_policy(), &claims)]).is_none());
        assert!(closest_miss(&[]).is_none());
    }

    #[test]
    fn bad_conditions_are_refused_at_compile() {
        let mut policy = github_policy();
        policy.conditions.push(Condition {
            claim: "sub".into(),
            kind: MatchKind::Regex,
            value: "(".into(),
            ignore_case: false,
        });
        let err = CompiledPolicy::compile(policy).unwrap_err();
        assert_eq!(err.index, 4);
    }

    #[test]
    fn evaluations_serialize_for_trust_test() {
        let evaluation = evaluate(&github_policy(), &github_claims());
        let json = serde_json::to_value(&evaluation).unwrap();
        assert_eq!(json["policy"], "deploy");
        assert_eq!(json["checks"][0]["passed"], true);
        assert_eq!(json["checks"][0]["detail"], "matched");
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledPolicy>();
    }
}
