//! A local OIDC issuer standing in for GitHub Actions and GitLab CI in the
//! CI-federation tests (issue 9, item 7): a real HTTP server on loopback
//! that serves discovery (OIDC Discovery §4) and a JWKS (RFC 7517 §5) with
//! real RSA-2048 and P-256 keys, and signs GitHub- and GitLab-shaped tokens.
//!
//! Its URL, `http://127.0.0.1:PORT[/path]` with no trailing slash, is the
//! `iss` it signs; Tessera accepts `http` issuers on loopback only. It
//! counts the requests it sees, per path and in all, so a test can say "the
//! issuer was asked once" or "the issuer saw no request at all", and it can
//! rotate its RSA key, serve a replaced key set, or fail with 500.
//!
//! Claims follow the platforms' documentation: GitHub's "OpenID Connect
//! reference" (docs.github.com/actions/reference/security/oidc) and
//! GitLab's "OpenID Connect (OIDC) Authentication Using ID Tokens"
//! (docs.gitlab.com/ci/secrets/id_token_authentication). Both send ids as
//! strings (GitLab's `runner_id` excepted, a number in its docs).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::hmac;
use aws_lc_rs::signature::KeyPair;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tessera::keys::{Alg, KeyMaterial};
use tokio::task::JoinHandle;

/// A JSON object of claims, for tests to override or remove claims.
pub type Claims = Map<String, Value>;

/// The repository the GitHub claims describe, and its numeric ids (strings,
/// as GitHub sends them).
pub const GITHUB_REPOSITORY: &str = "octo-org/octo-repo";
pub const GITHUB_OWNER: &str = "octo-org";
pub const GITHUB_REPOSITORY_ID: &str = "123456789";
pub const GITHUB_OWNER_ID: &str = "987654321";
pub const GITHUB_WORKFLOW_REF: &str =
    "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main";
/// GitHub tokens live 5 minutes (the `exp − iat` of GitHub's example).
pub const GITHUB_LIFETIME: i64 = 300;

/// The project the GitLab claims describe, and its numeric ids (strings).
pub const GITLAB_PROJECT: &str = "my-group/my-project";
pub const GITLAB_NAMESPACE: &str = "my-group";
pub const GITLAB_PROJECT_ID: &str = "20";
pub const GITLAB_NAMESPACE_ID: &str = "72";
/// GitLab ID tokens live as long as the job may: its timeout (60 min by
/// default) plus a margin; longer than a 1 h `--max-token-age`.
pub const GITLAB_LIFETIME: i64 = 3600 + 300;

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_PATH: &str = "/jwks";

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// How [`TestIssuer::sign_with`] signs a token.
#[derive(Debug, Clone)]
pub enum Signing {
    /// RS256 with the current RSA key (the default).
    Rs256,
    /// ES256 with the P-256 key.
    Es256,
    /// A valid RS256 signature by the current RSA key, under a `kid` the
    /// JWKS does not publish (for unknown-`kid` refetch and flood tests).
    UnknownKid(String),
    /// `{"alg":"none"}` and an empty signature (RFC 7519 §6.1).
    AlgNone,
    /// HS256 keyed with the RSA public key's PEM text: the alg-confusion
    /// attack on verifiers that let the token choose the algorithm.
    Hs256WithPublicKey,
    /// HS256 keyed with the given bytes (for other spellings of the attack).
    Hs256With(Vec<u8>),
    /// This header as given; signed per its `alg`: `ES256` with the EC
    /// key, `HS256` with the RSA public key's PEM, `none` unsigned,
    /// anything else with the current RSA key's RS256 signature.
    Raw { header: Value },
}

/// One published key.
struct IssuerKey {
    kid: String,
    material: KeyMaterial,
}

struct Keys {
    /// Every RSA key published, oldest first; the last signs by default.
    rsa: Vec<IssuerKey>,
    ec: IssuerKey,
}

impl Keys {
    fn rsa(&self) -> &IssuerKey {
        self.rsa.last().expect("the issuer always holds an RSA key")
    }
}

/// What the server shares with the test.
struct Shared {
    issuer: String,
    discovery_path: String,
    jwks_path: String,
    keys: Mutex<Keys>,
    jwks_override: Mutex<Option<Value>>,
    discovery_override: Mutex<Option<Value>>,
    down: AtomicBool,
    requests: AtomicUsize,
    discovery_requests: AtomicUsize,
    jwks_requests: AtomicUsize,
}

/// The issuer: stopped when dropped.
pub struct TestIssuer {
    /// `http://127.0.0.1:PORT[/path]`, no trailing slash: the `iss`.
    pub url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// Key material and counters stay out of logs: the URL and kids only.
impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys();
        let rsa: Vec<&str> = keys.rsa.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("TestIssuer")
            .field("url", &self.url)
            .field("rsa_kids", &rsa)
            .field("ec_kid", &keys.ec.kid)
            .finish_non_exhaustive()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIssuer {
    /// An issuer at `http://127.0.0.1:PORT`, with keys `rsa-1` (RS256) and
    /// `ec-1` (ES256).
    pub async fn start() -> TestIssuer {
        TestIssuer::start_at_path("").await
    }

    /// An issuer whose URL has a path, as GitHub Enterprise Server's
    /// `https://HOST/_services/token`: discovery is then served at
    /// `{url}/.well-known/openid-configuration` and keys at `{url}/jwks`.
    pub async fn start_at_path(path: &str) -> TestIssuer {
        let path = path.trim_end_matches('/');
        assert!(
            path.is_empty() || path.starts_with('/'),
            "path must start with /"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let keys = Keys {
            rsa: vec![IssuerKey {
                kid: "rsa-1".into(),
                material: KeyMaterial::generate(Alg::RS256).expect("RSA key"),
            }],
            ec: IssuerKey {
                kid: "ec-1".into(),
                material: KeyMaterial::generate(Alg::ES256).expect("P-256 key"),
            },
        };
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}{path}"),
            discovery_path: format!("{path}{DISCOVERY_PATH}"),
            jwks_path: format!("{path}{JWKS_PATH}"),
            keys: Mutex::new(keys),
            jwks_override: Mutex::new(None),
            discovery_override: Mutex::new(None),
            down: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
            jwks_requests: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("test issuer serves");
        });
        TestIssuer {
            url: shared.issuer.clone(),
            shared,
            server,
        }
    }

    /// Where the discovery document names the key set.
    pub fn jwks_uri(&self) -> String {
        format!("{}{JWKS_PATH}", self.url)
    }

    /// Requests to the discovery document so far.
    pub fn discovery_requests(&self) -> usize {
        self.shared.discovery_requests.load(Ordering::SeqCst)
    }

    /// Requests to the key set so far.
    pub fn jwks_requests(&self) -> usize {
        self.shared.jwks_requests.load(Ordering::SeqCst)
    }

    /// Requests to any path so far, for "the issuer saw nothing" checks.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The `kid` tokens are signed with by default.
    pub fn rsa_kid(&self) -> String {
        self.keys().rsa().kid.clone()
    }

    pub fn ec_kid(&self) -> String {
        self.keys().ec.kid.clone()
    }

    /// A new RSA key (`rsa-2`, `rsa-3`, …), published next to the old ones
    /// and signing from now on. Returns its `kid`.
    pub fn rotate_rsa(&self) -> String {
        let material = KeyMaterial::generate(Alg::RS256).expect("RSA key");
        let mut keys = self.keys();
        let kid = format!("rsa-{}", keys.rsa.len() + 1);
        keys.rsa.push(IssuerKey {
            kid: kid.clone(),
            material,
        });
        kid
    }

    /// Serve this body as the key set instead of the real one (an empty
    /// `{"keys":[]}`, a broken document, someone else's keys); `None`
    /// restores the real keys.
    pub fn set_jwks_override(&self, jwks: Option<Value>) {
        *lock(&self.shared.jwks_override) = jwks;
    }

    /// Serve this body as the discovery document (another `issuer`, a
    /// `jwks_uri` elsewhere); `None` restores the real one.
    pub fn set_discovery_override(&self, discovery: Option<Value>) {
        *lock(&self.shared.discovery_override) = discovery;
    }

    /// While down, every path answers 500 (still counted).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The key set as served when not overridden: every RSA key, then the
    /// EC key; public members only. For static `--jwks-file` tests.
    pub fn public_jwks(&self) -> Value {
        real_jwks(&self.keys())
    }

    /// The discovery document as served when not overridden.
    pub fn discovery(&self) -> Value {
        discovery(&self.shared)
    }

    /// The current RSA public key as a PEM SubjectPublicKeyInfo.
    pub fn rsa_public_key_pem(&self) -> String {
        let keys = self.keys();
        let KeyMaterial::Rs256(pair) = &keys.rsa().material else {
            unreachable!("RSA keys are RSA");
        };
        let der: PublicKeyX509Der<'static> = pair.public_key().as_der().expect("RSA public DER");
        let body = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// RS256 with the current RSA key, `kid` set.
    pub fn sign(&self, claims: &impl Serialize) -> String {
        self.sign_with(claims, Signing::Rs256)
    }

    /// A compact JWS (RFC 7515 §7.1) over `claims`, signed as `how` says.
    pub fn sign_with(&self, claims: &impl Serialize, how: Signing) -> String {
        let header = match how {
            Signing::Rs256 => json!({"typ": "JWT", "alg": "RS256", "kid": self.rsa_kid()}),
            Signing::Es256 => json!({"typ": "JWT", "alg": "ES256", "kid": self.ec_kid()}),
            Signing::UnknownKid(kid) => json!({"typ": "JWT", "alg": "RS256", "kid": kid}),
            Signing::AlgNone => json!({"alg": "none"}),
            Signing::Hs256WithPublicKey => {
                json!({"typ": "JWT", "alg": "HS256", "kid": self.rsa_kid()})
            }
            Signing::Hs256With(secret) => {
                let header = json!({"typ": "JWT", "alg": "HS256", "kid": self.rsa_kid()});
                let input = signing_input(&header, claims);
                let tag = hmac::sign(
                    &hmac::Key::new(hmac::HMAC_SHA256, &secret),
                    input.as_bytes(),
                );
                return format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
            }
            Signing::Raw { header } => header,
        };
        let input = signing_input(&header, claims);
        let signature = match header["alg"].as_str() {
            Some("none") => Vec::new(),
            Some("ES256") => self.keys().ec.material.sign(input.as_bytes()),
            Some("HS256") => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, self.rsa_public_key_pem().as_bytes());
                hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
            _ => self.keys().rsa().material.sign(input.as_bytes()),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Claims of a GitHub Actions token for a `push` to `main` of
    /// [`GITHUB_REPOSITORY`], run by `deploy.yml`: every claim GitHub
    /// documents, with `sub` in the `repo:ORG/REPO:ref:REF` form. See
    /// [`github_environment`], [`github_pull_request`],
    /// [`github_pull_request_target`] and [`github_tag`] for the others.
    pub fn github_claims(&self, audience: &str) -> Claims {
        let iat = now();
        let sha = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
        let claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": format!("repo:{GITHUB_REPOSITORY}:ref:refs/heads/main"),
            "aud": audience,
            "ref": "refs/heads/main",
            "sha": sha,
            "repository": GITHUB_REPOSITORY,
            "repository_id": GITHUB_REPOSITORY_ID,
            "repository_owner": GITHUB_OWNER,
            "repository_owner_id": GITHUB_OWNER_ID,
            "repository_visibility": "private",
            "run_id": "8123456789",
            "run_number": "42",
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            "actor": "octocat",
            "actor_id": "583231",
            "workflow": "Deploy",
            "workflow_ref": GITHUB_WORKFLOW_REF,
            "workflow_sha": sha,
            "job_workflow_ref": GITHUB_WORKFLOW_REF,
            "job_workflow_sha": sha,
            "head_ref": "",
            "base_ref": "",
            "event_name": "push",
            "ref_type": "branch",
            "ref_protected": "true",
            "check_run_id": "23456789012",
            "iss": self.url,
            "nbf": iat - 5,
            "iat": iat,
            "exp": iat + GITHUB_LIFETIME,
        });
        into_map(claims)
    }

    /// Claims of a GitLab CI ID token for a `push` pipeline on the
    /// protected branch `main` of [`GITLAB_PROJECT`]: every claim GitLab
    /// documents, `sub` in the `project_path:…:ref_type:…:ref:…` form.
    /// See [`gitlab_environment`] and [`gitlab_tag`].
    pub fn gitlab_claims(&self, audience: &str) -> Claims {
        let iat = now();
        let sha = "714a629c0b401fdce83e847fc9589983fc6f46bc";
        let host = self.url.split_once("://").map_or(&*self.url, |(_, h)| h);
        let claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "iss": self.url,
            "aud": audience,
            "sub": format!("project_path:{GITLAB_PROJECT}:ref_type:branch:ref:main"),
            "namespace_id": GITLAB_NAMESPACE_ID,
            "namespace_path": GITLAB_NAMESPACE,
            "project_id": GITLAB_PROJECT_ID,
            "project_path": GITLAB_PROJECT,
            "user_id": "1",
            "user_login": "sample-user",
            "user_email": "sample-user@example.com",
            "user_access_level": "developer",
            "pipeline_id": "574",
            "pipeline_source": "push",
            "job_id": "302",
            "ref": "main",
            "ref_type": "branch",
            "ref_path": "refs/heads/main",
            "ref_protected": "true",
            "runner_id": 1,
            "runner_environment": "gitlab-hosted",
            "sha": sha,
            "ci_config_ref_uri": format!("{host}/{GITLAB_PROJECT}//.gitlab-ci.yml@refs/heads/main"),
            "ci_config_sha": sha,
            "project_visibility": "private",
            "nbf": iat - 5,
            "iat": iat,
            "exp": iat + GITLAB_LIFETIME,
        });
        into_map(claims)
    }

    fn keys(&self) -> MutexGuard<'_, Keys> {
        lock(&self.shared.keys)
    }
}

/// The repository named by a GitHub token's `repository` claim.
fn github_repository(claims: &Claims) -> String {
    claims["repository"]
        .as_str()
        .unwrap_or(GITHUB_REPOSITORY)
        .to_owned()
}

/// A job in a deployment environment: `environment` set, and `sub` in the
/// `repo:ORG/REPO:environment:NAME` form (which then replaces the ref form).
pub fn github_environment(claims: &mut Claims, name: &str) {
    let repository = github_repository(claims);
    claims.insert("environment".into(), json!(name));
    claims.insert(
        "sub".into(),
        json!(format!("repo:{repository}:environment:{name}")),
    );
}

/// A run for a tag: `ref` `refs/tags/TAG`, `ref_type` `tag`, the ref form of
/// `sub`.
pub fn github_tag(claims: &mut Claims, tag: &str) {
    let repository = github_repository(claims);
    claims.insert("ref".into(), json!(format!("refs/tags/{tag}")));
    claims.insert("ref_type".into(), json!("tag"));
    claims.insert("ref_protected".into(), json!("false"));
    claims.insert(
        "sub".into(),
        json!(format!("repo:{repository}:ref:refs/tags/{tag}")),
    );
}

/// A `pull_request` run for PR `number` from `head` into `main`: the merge
/// ref, and `sub` in the `repo:ORG/REPO:pull_request` form.
pub fn github_pull_request(claims: &mut Claims, number: u32, head: &str) {
    let repository = github_repository(claims);
    claims.insert("event_name".into(), json!("pull_request"));
    claims.insert("ref".into(), json!(format!("refs/pull/{number}/merge")));
    claims.insert("ref_protected".into(), json!("false"));
    claims.insert("head_ref".into(), json!(head));
    claims.insert("base_ref".into(), json!("main"));
    claims.insert(
        "sub".into(),
        json!(format!("repo:{repository}:pull_request")),
    );
}

/// A `pull_request_target` run triggered by a fork's PR from `head`: it
/// carries the base repository's claims, `ref` `refs/heads/main` and the
/// ref form of `sub`, exactly as a push to `main` would, while the workflow
/// may run code the fork controls (the "pwn request"). Only `event_name`,
/// `head_ref` and `base_ref` tell it apart.
pub fn github_pull_request_target(claims: &mut Claims, head: &str) {
    claims.insert("event_name".into(), json!("pull_request_target"));
    claims.insert("head_ref".into(), json!(head));
    claims.insert("base_ref".into(), json!("main"));
}

/// A GitLab job in a deployment environment.
pub fn gitlab_environment(claims: &mut Claims, name: &str, protected: bool, tier: &str) {
    claims.insert("environment".into(), json!(name));
    claims.insert("environment_protected".into(), json!(protected.to_string()));
    claims.insert("deployment_tier".into(), json!(tier));
}

/// A GitLab pipeline for a tag: `ref` is the bare tag name, as GitLab sends.
pub fn gitlab_tag(claims: &mut Claims, tag: &str, protected: bool) {
    let project = claims["project_path"]
        .as_str()
        .unwrap_or(GITLAB_PROJECT)
        .to_owned();
    claims.insert("ref".into(), json!(tag));
    claims.insert("ref_type".into(), json!("tag"));
    claims.insert("ref_path".into(), json!(format!("refs/tags/{tag}")));
    claims.insert("ref_protected".into(), json!(protected.to_string()));
    claims.insert(
        "sub".into(),
        json!(format!("project_path:{project}:ref_type:tag:ref:{tag}")),
    );
}

/// `base64url(header) . base64url(claims)`: the JWS signing input.
fn signing_input(header: &Value, claims: &impl Serialize) -> String {
    let claims = serde_json::to_vec(claims).expect("claims serialise");
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

fn into_map(value: Value) -> Claims {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("claims are an object"),
    }
}

/// A poisoned lock only means another test thread panicked: go on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn real_jwks(keys: &Keys) -> Value {
    let jwks: Vec<Value> = keys
        .rsa
        .iter()
        .chain(std::iter::once(&keys.ec))
        .map(|k| k.material.public_jwk(&k.kid))
        .collect();
    json!({ "keys": jwks })
}

/// The members OIDC Discovery §3 requires, and `claims_supported`.
fn discovery(shared: &Shared) -> Value {
    json!({
        "issuer": shared.issuer,
        "jwks_uri": format!("{}{JWKS_PATH}", shared.issuer),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public", "pairwise"],
        "claims_supported": [
            "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha",
            "repository", "repository_id", "repository_owner", "repository_owner_id",
            "run_id", "run_number", "run_attempt", "actor", "actor_id", "workflow",
            "workflow_ref", "workflow_sha", "head_ref", "base_ref", "event_name",
            "ref_type", "ref_protected", "environment", "job_workflow_ref",
            "job_workflow_sha", "repository_visibility", "runner_environment",
            "namespace_id", "namespace_path", "project_id", "project_path",
            "pipeline_id", "pipeline_source", "job_id", "ci_config_ref_uri",
        ],
    })
}

/// Every request, counted; discovery and keys on their paths, 404 elsewhere,
/// and 500 everywhere while down.
async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let path = request.uri().path();
    let body = if path == shared.discovery_path {
        shared.discovery_requests.fetch_add(1, Ordering::SeqCst);
        lock(&shared.discovery_override).clone()
    } else if path == shared.jwks_path {
        shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
        lock(&shared.jwks_override).clone()
    } else {
        None
    };
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = match body {
        Some(body) => body,
        None if path == shared.discovery_path => discovery(&shared),
        None if path == shared.jwks_path => real_jwks(&lock(&shared.keys)),
        None => return StatusCode::NOT_FOUND.into_response(),
    };
    axum::Json(body).into_response()
}
