//! The exchange of a CI job's OIDC token for a Tessera access token:
//! RFC 8693 token exchange (`subject_token`), or the RFC 7523 JWT-bearer
//! grant (`assertion`) when its `iss` is a trusted issuer.
//!
//! [`assess`] runs every check the exchange makes (issuer, keys, the token
//! itself, each policy of the issuer) without consuming anything: the
//! exchange acts on its outcome, and `tessera trust test` prints it.
//!
//! Refusals tell the client only that the token was refused (RFC 8693
//! §2.2.2: `invalid_request`; RFC 7523 §3.1: `invalid_grant`), unless
//! `federation.debug` is set; the reason always goes to the audit log.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::issuers::could_be_issuer;
use super::policy::{PolicyEvaluation, closest_miss};
use super::trust_cache::IssuerTrust;
use super::verify::{self, Check, LEEWAY_SECS};
use crate::audit::{Actor, Event, Outcome, bounded};
use crate::clock;
use crate::oauth::client::Client;
use crate::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use crate::oauth::token_status::TRUST_CLIENT_PREFIX;
use crate::oauth::{Core, ErrorCode, OAuthError, scope};
use crate::store::ReplayStore;
use crate::tokens::access::{AccessTokenRequest, Delegation};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: the token types a CI job's token may be presented as.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Which grant carried the token: it decides the refusal's error code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    TokenExchange,
    JwtBearer,
}

impl Carrier {
    fn grant_type(self) -> &'static str {
        match self {
            Carrier::TokenExchange => TOKEN_EXCHANGE,
            Carrier::JwtBearer => crate::oauth::grants::jwt_bearer::GRANT_TYPE,
        }
    }

    fn refusal(self) -> OAuthError {
        match self {
            Carrier::TokenExchange => {
                OAuthError::invalid_request("the subject token was not accepted")
            }
            Carrier::JwtBearer => {
                OAuthError::new(ErrorCode::InvalidGrant, "the assertion was not accepted")
            }
        }
    }
}

/// Everything the exchange checks about a token, in order.
#[derive(Debug, Serialize)]
pub struct Assessment {
    /// The issuer the token names, when it is a trusted one.
    pub issuer: Option<String>,
    /// Issuer, keys and token-level checks.
    pub checks: Vec<Check>,
    /// Each policy of the issuer (or the one asked about), when the
    /// token passed its checks.
    pub policies: Vec<PolicyEvaluation>,
    #[serde(skip)]
    trust: Option<Arc<IssuerTrust>>,
    #[serde(skip)]
    claims: Option<Map<String, Value>>,
    /// The claims of a token that verified but failed a later check.
    #[serde(skip)]
    signed_claims: Option<Map<String, Value>>,
}

impl Assessment {
    fn refused(check: &'static str, detail: impl Into<String>) -> Self {
        Assessment {
            issuer: None,
            checks: vec![Check {
                check,
                passed: false,
                detail: detail.into(),
            }],
            policies: Vec::new(),
            trust: None,
            claims: None,
            signed_claims: None,
        }
    }

    /// The policies that matched.
    pub fn matched(&self) -> impl Iterator<Item = &PolicyEvaluation> {
        self.policies.iter().filter(|p| p.matched())
    }
}

/// The `iss` a token claims, read before anything is verified: it only
/// chooses which trusted issuer's keys to verify with.
pub fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        iss: Option<String>,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Named>(token)
        .ok()
        .and_then(|c| c.iss)
        .filter(|iss| could_be_issuer(iss))
}

/// Runs the exchange's checks on `token`, consuming and issuing nothing.
pub async fn assess(core: &Core, token: &str, depth: Depth) -> Result<Assessment, OAuthError> {
    let Some(iss) = unverified_issuer(token) else {
        return Ok(Assessment::refused(
            "issuer",
            "the token names no issuer that could be trusted (iss must be an https URL)",
        ));
    };
    // Only a configured issuer is ever fetched from, whatever a token says.
    let Some(trust) = core.trust.get(&core.store, &iss).await? else {
        return Ok(Assessment::refused(
            "issuer",
            format!("{:?} is not a trusted issuer", bounded(&iss, 200)),
        ));
    };
    let mut checks = vec![Check {
        check: "issuer",
        passed: true,
        detail: "a trusted issuer".into(),
    }];
    let now = clock::now();
    let verification = match &trust.static_keys {
        Some(keys) => verify::verify(token, &trust.issuer, keys, now),
        None => {
            let first = match core.issuer_keys.get(&iss, false).await {
                Ok(keys) => verify::verify(token, &trust.issuer, &keys, now),
                Err(e) => return Ok(keys_unavailable(iss, checks, e.0)),
            };
            if first.unknown_kid {
                // The issuer may have rotated its keys: refetch (once per
                // cooldown) and verify again.
                match core.issuer_keys.get(&iss, true).await {
                    Ok(keys) => verify::verify(token, &trust.issuer, &keys, now),
                    Err(_) => first,
                }
            } else {
                first
            }
        }
    };
    checks.extend(verification.checks);
    let policies = match &verification.claims {
        Some(claims) => evaluate(&trust, claims, depth),
        None => Vec::new(),
    };
    Ok(Assessment {
        issuer: Some(iss),
        checks,
        policies,
        trust: Some(trust),
        claims: verification.claims,
        signed_claims: verification.signed_claims,
    })
}

/// How much of the policies' reasoning to report.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Every check of every policy (`trust test`).
    Full,
    /// The exchange's hot path: when exactly one policy matches, only its
    /// name (no report is built); otherwise every check, for the audit.
    Decide,
}

fn evaluate(
    trust: &IssuerTrust,
    claims: &Map<String, Value>,
    depth: Depth,
) -> Vec<PolicyEvaluation> {
    let candidates = || trust.policies.iter();
    if depth == Depth::Decide {
        let mut matching = candidates().filter(|p| p.matches(claims));
        if let (Some(one), None) = (matching.next(), matching.next()) {
            return vec![PolicyEvaluation {
                policy: one.policy.name.clone(),
                checks: Vec::new(),
            }];
        }
    }
    candidates().map(|p| p.evaluate(claims)).collect()
}

fn keys_unavailable(iss: String, mut checks: Vec<Check>, reason: String) -> Assessment {
    checks.push(Check {
        check: "keys",
        passed: false,
        detail: format!(
            "the issuer's keys cannot be fetched: {}",
            bounded(&reason, 300)
        ),
    });
    Assessment {
        issuer: Some(iss),
        checks,
        policies: Vec::new(),
        trust: None,
        claims: None,
        signed_claims: None,
    }
}

/// What `tessera trust test` shows: every check, and what the exchange
/// would do with the token. Nothing is consumed or issued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrustReport {
    /// Whether the exchange would issue a token now.
    pub accepted: bool,
    /// Why, in one line: the policy and service user, or the reason for
    /// the refusal that the audit log would record.
    pub verdict: String,
    pub policy: Option<String>,
    pub service_user: Option<String>,
    #[schema(value_type = Object)]
    pub assessment: Assessment,
}

/// The dry run behind `tessera trust test`: [`assess`], then the decision
/// the exchange would make, including whether the `jti` was used already,
/// without consuming it. `only` shows one policy's checks (the decision
/// still weighs them all, as the exchange does).
pub async fn dry_run(
    core: &Core,
    token: &str,
    only: Option<&str>,
) -> Result<TrustReport, OAuthError> {
    let mut assessment = assess(core, token, Depth::Full).await?;
    if let (Some(name), Some(trust)) = (only, &assessment.trust)
        && !trust.policies.iter().any(|p| p.policy.name == name)
    {
        return Err(OAuthError::not_found(format!(
            "the issuer has no policy named `{}`",
            crate::oauth::error::named(name)
        )));
    }
    let decided = decide(core, &assessment).await;
    if let Some(name) = only {
        assessment.policies.retain(|p| p.policy == name);
    }
    let report = match decided {
        Ok((trust, claims, index, user)) => {
            let policy = trust.policies[index].policy.name.clone();
            let used = core
                .store
                .is_used(replay_key(&trust.issuer.issuer, &claims))
                .await?;
            let verdict = if used {
                "the token's jti was already used".to_owned()
            } else {
                format!(
                    "accepted by policy {policy:?} for service user {}",
                    user.user.id
                )
            };
            TrustReport {
                accepted: !used,
                verdict,
                policy: Some(policy),
                service_user: Some(user.user.id.clone()),
                assessment,
            }
        }
        Err(refusal) => TrustReport {
            accepted: false,
            verdict: refusal.reason,
            policy: refusal.closest,
            service_user: refusal.service_user,
            assessment,
        },
    };
    Ok(report)
}

/// The single-use key of a CI token: its issuer and `jti`, in a domain of
/// their own (no assertion's key can be the same).
fn replay_key(issuer: &str, claims: &Map<String, Value>) -> String {
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut key = digest::Context::new(&digest::SHA256);
    key.update(b"trust\0");
    key.update(issuer.as_bytes());
    key.update(b"\0");
    key.update(jti.as_bytes());
    crate::keys::hex(key.finish().as_ref())
}

/// What the audit log records of an exchange, success or failure (issue 9
/// item 6).
#[derive(Debug, Default, Serialize)]
struct ExchangeRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(flatten)]
    workload: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    closest_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_user: Option<String>,
    /// Refusals of the same kind from the same source skipped since the
    /// last one recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed: Option<u64>,
}

/// The claims that say which job a token came from, bounded: GitHub's and
/// GitLab's names for repository, ref, run and event.
fn workload(issuer: &str, claims: &Map<String, Value>, policy: Option<&str>) -> Map<String, Value> {
    let text = |name: &str| {
        claims.get(name).and_then(|v| match v {
            Value::String(s) => Some(bounded(s, 200)),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    };
    let mut out = Map::new();
    out.insert("issuer".into(), json!(bounded(issuer, 255)));
    let fields = [
        ("subject", text("sub")),
        ("repository", text("repository")),
        ("project", text("project_path")),
        ("ref", text("ref")),
        ("run_id", text("run_id").or_else(|| text("pipeline_id"))),
        (
            "event",
            text("event_name").or_else(|| text("pipeline_source")),
        ),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            out.insert(name.into(), Value::String(value));
        }
    }
    if let Some(policy) = policy {
        out.insert("policy".into(), json!(policy));
    }
    out
}

/// Exchanges `token` for an access token, or refuses it and records why.
pub async fn exchange(
    core: &Core,
    token: &str,
    carrier: Carrier,
    client: Option<&Client>,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<TokenResponse, OAuthError> {
    let assessment = assess(core, token, Depth::Decide).await?;
    let remote = context.remote;
    let mut record = ExchangeRecord {
        issuer: assessment.issuer.clone(),
        ..Default::default()
    };
    let signed = assessment
        .claims
        .as_ref()
        .or(assessment.signed_claims.as_ref());
    if let Some(claims) = signed {
        let issuer = assessment.issuer.as_deref().unwrap_or_default();
        record.workload = workload(issuer, claims, None);
        record.workload.remove("issuer");
    }
    let decided = decide(core, &assessment).await;
    let (trust, claims, policy, user) = match decided {
        Ok(decided) => decided,
        Err(refusal) => {
            let reason = refusal.reason.clone();
            record.reason = Some(refusal.reason);
            record.closest_policy = refusal.closest;
            record.service_user = refusal.service_user;
            audit_refusal(core, client, record, remote).await;
            return Err(generic_refusal(core, carrier, reason));
        }
    };
    let policy = &trust.policies[policy].policy;
    record.policy = Some(policy.name.clone());
    record.service_user = Some(user.user.id.clone());
    let user = &user.user;

    // The request's own parameters, before the jti is consumed: a typo
    // must not burn the job's token.
    let params = (|| {
        let issued_type = issued_token_type(request)?;
        let allowed: Vec<String> = policy
            .scopes
            .iter()
            .filter(|s| user.scopes.contains(s))
            .cloned()
            .collect();
        let scopes = scope::grant_scopes(&allowed, request.get("scope"))?;
        let default_audience = user
            .audiences
            .first()
            .cloned()
            .unwrap_or_else(|| core.config.issuer().to_owned());
        let audience =
            scope::grant_audience(&user.audiences, default_audience, &request.targets())?;
        Ok::<_, OAuthError>((issued_type, scopes, audience))
    })();
    let (issued_type, scopes, audience) = match params {
        Ok(params) => params,
        Err(error) => {
            record.reason = Some(error.description.to_string());
            audit_refusal(core, client, record, remote).await;
            return Err(error);
        }
    };

    // Single use across replicas: the replay table's unique key.
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let key = replay_key(&trust.issuer.issuer, &claims);
    if !core
        .writer
        .consume(key, exp.saturating_add(LEEWAY_SECS))
        .await?
    {
        let reason = "the token's jti was already used".to_owned();
        record.reason = Some(reason.clone());
        audit_refusal(core, client, record, remote).await;
        return Err(generic_refusal(core, carrier, reason));
    }

    let issuer = core.config.issuer();
    let tokens = &core.config.tokens;
    let lifetime = user
        .token_lifetime(Duration::from_secs(policy.lifetime))
        .min(tokens.max_lifetime);
    let client_id = client.map_or_else(
        || format!("{TRUST_CLIENT_PREFIX}{}", policy.name),
        |c| c.client_id.clone(),
    );
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let delegation = Delegation {
        act: json!({ "iss": trust.issuer.issuer, "sub": subject }),
        workload: Value::Object(workload(&trust.issuer.issuer, &claims, Some(&policy.name))),
    };
    let mut response = crate::oauth::grants::issue(
        core,
        carrier.grant_type(),
        AccessTokenRequest {
            issuer,
            subject: &user.id,
            client_id: &client_id,
            audience: &audience,
            scopes: &scopes,
            identity_kind: "service",
            lifetime,
            alg: client.map_or(crate::keys::Alg::ES256, |c| c.access_token_alg),
            delegation: Some(&delegation),
            source_token: None,
            named: None,
        },
        remote,
    )
    .await?;
    if carrier == Carrier::TokenExchange {
        response.issued_token_type = Some(issued_type);
    }
    Ok(response)
}

/// RFC 8693 §2.1 `requested_token_type`: Tessera issues JWT access tokens,
/// which are both.
pub(crate) fn issued_token_type(request: &TokenRequest) -> Result<&'static str, OAuthError> {
    match request.get("requested_token_type") {
        None | Some(ACCESS_TOKEN_TYPE) => Ok(ACCESS_TOKEN_TYPE),
        Some(JWT_TOKEN_TYPE) => Ok(JWT_TOKEN_TYPE),
        Some(_) => Err(OAuthError::invalid_request(
            "requested_token_type must be urn:ietf:params:oauth:token-type:access_token or \
             urn:ietf:params:oauth:token-type:jwt",
        )),
    }
}

struct Refusal {
    reason: String,
    /// The policy that came closest, and the service user it names.
    closest: Option<String>,
    service_user: Option<String>,
}

type Decided = (
    Arc<IssuerTrust>,
    Map<String, Value>,
    usize,
    Arc<crate::oauth::service_user_cache::CachedServiceUser>,
);

/// The one policy that matched and its enabled service user, or why not.
async fn decide(core: &Core, assessment: &Assessment) -> Result<Decided, Refusal> {
    let refusal = |reason: String| Refusal {
        reason,
        closest: None,
        service_user: None,
    };
    if let Some(failed) = assessment.checks.iter().find(|c| !c.passed) {
        return Err(refusal(format!("{}: {}", failed.check, failed.detail)));
    }
    let (Some(trust), Some(claims)) = (&assessment.trust, &assessment.claims) else {
        return Err(refusal("the token was not verified".into()));
    };
    let matched: Vec<&PolicyEvaluation> = assessment.matched().collect();
    let evaluation = match matched.as_slice() {
        [one] => *one,
        [] => {
            let closest = closest_miss(&assessment.policies);
            let reason = match closest {
                Some(p) => format!(
                    "no policy matched; closest {:?} failed {}",
                    p.policy,
                    p.first_failure()
                        .map_or(String::new(), |c| format!("{}: {}", c.condition, c.detail))
                ),
                None => "no policy is configured for this issuer".into(),
            };
            let service_user = closest.and_then(|c| {
                trust
                    .policies
                    .iter()
                    .find(|p| p.policy.name == c.policy)
                    .map(|p| p.policy.service_user.clone())
            });
            return Err(Refusal {
                reason,
                closest: closest.map(|p| p.policy.clone()),
                service_user,
            });
        }
        several => {
            let names: Vec<&str> = several.iter().map(|p| p.policy.as_str()).collect();
            return Err(refusal(format!(
                "several policies match ({}); give each its own audience",
                names.join(", ")
            )));
        }
    };
    let index = trust
        .policies
        .iter()
        .position(|p| p.policy.name == evaluation.policy)
        .ok_or_else(|| refusal("the policy matched is gone".into()))?;
    let user_id = &trust.policies[index].policy.service_user;
    let user = match core.service_user_cache.get(&core.store, user_id).await {
        Ok(Some(user)) => user,
        Ok(None) => return Err(refusal(format!("the service user {user_id} is gone"))),
        Err(e) => return Err(refusal(format!("the service user could not be read: {e}"))),
    };
    if !user.user.enabled {
        return Err(Refusal {
            service_user: Some(user_id.clone()),
            ..refusal(format!("the service user {user_id} is disabled"))
        });
    }
    Ok((trust.clone(), claims.clone(), index, user))
}

/// Records a refusal: every one from a token that verified (it names the
/// job), sampled per source and job so that a flood of them (anyone can
/// mint a validly signed GitHub token for their own repository) costs the
/// log a few rows a minute, with the count of those skipped; junk from
/// unknown issuers is sampled per source.
async fn audit_refusal(
    core: &Core,
    client: Option<&Client>,
    mut record: ExchangeRecord,
    remote: Option<String>,
) {
    let source = match record.workload.get("subject").and_then(Value::as_str) {
        Some(subject) => {
            let job = digest::digest(&digest::SHA256, subject.as_bytes());
            format!(
                "{}|{}",
                remote.as_deref().unwrap_or_default(),
                crate::keys::hex(&job.as_ref()[..8])
            )
        }
        None => remote.clone().unwrap_or_default(),
    };
    let Some(suppressed) = core.auth_failures.admit(Some(&source)) else {
        return;
    };
    record.suppressed = (suppressed > 0).then_some(suppressed);
    let mut event = Event::new(
        Actor::anonymous(),
        "trust.exchange_refused",
        Outcome::Failure,
    )
    .remote(remote)
    .details(&record);
    if let Some(client) = client {
        event = event.client(client.client_id.clone());
    }
    event.record_via(&core.writer).await;
}

/// The client's error for a refused token: generic, unless
/// `federation.debug` asks for the reason.
fn generic_refusal(core: &Core, carrier: Carrier, reason: String) -> OAuthError {
    let error = carrier.refusal();
    if core.config.federation.debug {
        OAuthError::new(error.code, format!("{}: {reason}", error.description))
    } else {
        error.with_detail(reason)
    }
}
