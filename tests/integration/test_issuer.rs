//! The CI-federation tests' local issuer, tested on its own: what it serves
//! over HTTP, that its tokens verify with `jsonwebtoken` against the key set
//! fetched from it, that rotation and outages show, and that the attack
//! tokens are shaped as their names say. No Tessera server is involved.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};

use crate::common::test_issuer::{
    self, GITHUB_LIFETIME, GITLAB_LIFETIME, Signing, TestIssuer, github_environment,
    github_pull_request, github_pull_request_target, gitlab_tag,
};

const AUDIENCE: &str = "https://tessera.example";

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.expect("the issuer answers")
}

async fn fetch_jwks(issuer: &TestIssuer) -> JwkSet {
    let discovery: Value = get(&format!("{}/.well-known/openid-configuration", issuer.url))
        .await
        .json()
        .await
        .unwrap();
    let uri = discovery["jwks_uri"].as_str().unwrap();
    get(uri).await.json().await.unwrap()
}

/// Verifies `token` as a relying party would: the key chosen by `kid` from
/// the fetched set, the algorithm pinned, `iss` and `aud` checked.
fn verify(jwks: &JwkSet, issuer: &TestIssuer, token: &str, alg: Algorithm) -> Value {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let kid = decode_header(token).unwrap().kid.expect("kid set");
    let jwk = jwks.find(&kid).expect("the kid is published");
    let mut validation = Validation::new(alg);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[&issuer.url]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the token verifies")
        .claims
}

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_jwks_are_served_and_counted() {
    let issuer = TestIssuer::start().await;
    assert!(issuer.url.starts_with("http://127.0.0.1:") && !issuer.url.ends_with('/'));
    assert_eq!(issuer.requests(), 0);

    let discovery: Value = get(&format!("{}/.well-known/openid-configuration", issuer.url))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], json!(issuer.url));
    assert_eq!(discovery["jwks_uri"], json!(issuer.jwks_uri()));
    for member in [
        "id_token_signing_alg_values_supported",
        "response_types_supported",
        "subject_types_supported",
        "claims_supported",
    ] {
        assert!(discovery[member].is_array(), "{member}");
    }

    let jwks: Value = get(&issuer.jwks_uri()).await.json().await.unwrap();
    assert_eq!(jwks, issuer.public_jwks());
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["rsa-1", "ec-1"]);
    for key in jwks["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{private} published");
        }
    }

    assert_eq!(
        get(&format!("{}/elsewhere", issuer.url)).await.status(),
        404
    );
    assert_eq!(
        (
            issuer.discovery_requests(),
            issuer.jwks_requests(),
            issuer.requests()
        ),
        (1, 1, 3)
    );
    let debug = format!("{issuer:?}");
    assert!(
        debug.contains("rsa-1") && !debug.contains("\"n\""),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_verify_against_the_fetched_jwks() {
    let issuer = TestIssuer::start().await;
    let jwks = fetch_jwks(&issuer).await;

    let github = issuer.github_claims(AUDIENCE);
    let token = issuer.sign(&github);
    assert_eq!(header_of(&token)["kid"], "rsa-1");
    let claims = verify(&jwks, &issuer, &token, Algorithm::RS256);
    assert_eq!(claims, Value::Object(github));

    let gitlab = issuer.gitlab_claims(AUDIENCE);
    let token = issuer.sign_with(&gitlab, Signing::Es256);
    assert_eq!(header_of(&token)["kid"], "ec-1");
    let claims = verify(&jwks, &issuer, &token, Algorithm::ES256);
    assert_eq!(claims, Value::Object(gitlab));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_publishes_the_new_kid_and_signs_with_it() {
    let issuer = TestIssuer::start().await;
    let before = issuer.sign(&issuer.github_claims(AUDIENCE));
    assert_eq!(issuer.rotate_rsa(), "rsa-2");
    assert_eq!(issuer.rsa_kid(), "rsa-2");

    let jwks = fetch_jwks(&issuer).await;
    let kids: Vec<_> = jwks
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(kids, ["rsa-1", "rsa-2", "ec-1"]);
    let after = issuer.sign(&issuer.github_claims(AUDIENCE));
    assert_eq!(header_of(&after)["kid"], "rsa-2");
    verify(&jwks, &issuer, &before, Algorithm::RS256);
    verify(&jwks, &issuer, &after, Algorithm::RS256);
    assert_eq!(
        (issuer.discovery_requests(), issuer.jwks_requests()),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_tokens_are_shaped_as_named() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let issuer = TestIssuer::start().await;
    let claims = issuer.github_claims(AUDIENCE);

    let none = issuer.sign_with(&claims, Signing::AlgNone);
    assert_eq!(header_of(&none), json!({"alg": "none"}));
    assert!(none.ends_with('.'), "an empty signature");

    // HS256 under the RSA key's kid, and a valid HMAC keyed with its PEM.
    let hs = issuer.sign_with(&claims, Signing::Hs256WithPublicKey);
    assert_eq!(header_of(&hs)["alg"], "HS256");
    assert_eq!(header_of(&hs)["kid"], "rsa-1");
    let pem = issuer.rsa_public_key_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[AUDIENCE]);
    decode::<Value>(&hs, &DecodingKey::from_secret(pem.as_bytes()), &validation)
        .expect("keyed with the public key's PEM");

    // A genuine RSA signature under a kid that is not published.
    let jwks = fetch_jwks(&issuer).await;
    let unknown = issuer.sign_with(&claims, Signing::UnknownKid("kid-404".into()));
    assert_eq!(header_of(&unknown)["kid"], "kid-404");
    assert!(jwks.find("kid-404").is_none());
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[AUDIENCE]);
    let rsa = DecodingKey::from_jwk(jwks.find("rsa-1").unwrap()).unwrap();
    decode::<Value>(&unknown, &rsa, &validation).expect("signed by rsa-1");

    let raw = issuer.sign_with(
        &claims,
        Signing::Raw {
            header: json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}),
        },
    );
    assert_eq!(header_of(&raw)["crit"], json!(["exp"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_outages_and_paths() {
    let issuer = TestIssuer::start_at_path("/_services/token").await;
    assert!(issuer.url.ends_with("/_services/token"));
    let discovery_url = format!("{}/.well-known/openid-configuration", issuer.url);
    let discovery: Value = get(&discovery_url).await.json().await.unwrap();
    assert_eq!(discovery["issuer"], json!(issuer.url));
    assert_eq!(discovery["jwks_uri"], json!(format!("{}/jwks", issuer.url)));

    issuer.set_jwks_override(Some(json!({"keys": []})));
    let jwks: Value = get(&issuer.jwks_uri()).await.json().await.unwrap();
    assert_eq!(jwks, json!({"keys": []}));
    issuer.set_discovery_override(Some(json!({"issuer": "https://elsewhere.example"})));
    let other: Value = get(&discovery_url).await.json().await.unwrap();
    assert_eq!(other["issuer"], "https://elsewhere.example");

    issuer.set_down(true);
    assert_eq!(get(&issuer.jwks_uri()).await.status(), 500);
    assert_eq!(get(&discovery_url).await.status(), 500);
    issuer.set_down(false);
    issuer.set_jwks_override(None);
    issuer.set_discovery_override(None);
    let jwks: Value = get(&issuer.jwks_uri()).await.json().await.unwrap();
    assert_eq!(jwks, issuer.public_jwks());
    assert_eq!(
        (issuer.discovery_requests(), issuer.jwks_requests()),
        (3, 3)
    );
    assert_eq!(issuer.requests(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_take_the_platforms_shapes() {
    let issuer = TestIssuer::start().await;
    let digits = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
    };

    let github = issuer.github_claims(AUDIENCE);
    for id in ["repository_id", "repository_owner_id", "run_id", "actor_id"] {
        assert!(digits(&github[id]), "{id} is a string of digits");
    }
    assert_eq!(github["iss"], json!(issuer.url));
    assert_eq!(github["sub"], "repo:octo-org/octo-repo:ref:refs/heads/main");
    let iat = github["iat"].as_i64().unwrap();
    assert!((iat - test_issuer::now()).abs() <= 5);
    assert_eq!(github["exp"].as_i64().unwrap() - iat, GITHUB_LIFETIME);
    assert_ne!(github["jti"], issuer.github_claims(AUDIENCE)["jti"]);

    let mut env = github.clone();
    github_environment(&mut env, "prod");
    assert_eq!(env["sub"], "repo:octo-org/octo-repo:environment:prod");
    let mut pr = github.clone();
    github_pull_request(&mut pr, 7, "feature");
    assert_eq!(pr["sub"], "repo:octo-org/octo-repo:pull_request");
    assert_eq!(pr["ref"], "refs/pull/7/merge");
    let mut prt = github.clone();
    github_pull_request_target(&mut prt, "evil-fork:main");
    assert_eq!(prt["event_name"], "pull_request_target");
    assert_eq!((&prt["sub"], &prt["ref"]), (&github["sub"], &github["ref"]));

    let gitlab = issuer.gitlab_claims(AUDIENCE);
    for id in [
        "project_id",
        "namespace_id",
        "pipeline_id",
        "job_id",
        "user_id",
    ] {
        assert!(digits(&gitlab[id]), "{id} is a string of digits");
    }
    assert_eq!(
        gitlab["sub"],
        "project_path:my-group/my-project:ref_type:branch:ref:main"
    );
    assert_eq!(gitlab["ref_protected"], "true");
    let iat = gitlab["iat"].as_i64().unwrap();
    assert_eq!(gitlab["exp"].as_i64().unwrap() - iat, GITLAB_LIFETIME);
    let mut tag = gitlab.clone();
    gitlab_tag(&mut tag, "v1.2.0", true);
    assert_eq!(
        tag["sub"],
        "project_path:my-group/my-project:ref_type:tag:ref:v1.2.0"
    );
}

/// The issuer as Tessera's federation code sees it: keys fetched through
/// discovery by `IssuerKeys`, tokens put through `federation::verify`.
/// GitLab's default lifetime (job timeout + 5 min) is over the default 1 h
/// cap, as it is against gitlab.com: the issuer must be given a larger cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tessera_fetches_its_keys_and_verifies_its_tokens() {
    use tessera::federation::issuer_keys::IssuerKeys;
    use tessera::federation::model::{DEFAULT_MAX_TOKEN_AGE, TrustedIssuer};
    use tessera::federation::verify::verify as tessera_verify;

    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let issuer = TestIssuer::start().await;
    let trusted = TrustedIssuer {
        issuer: issuer.url.clone(),
        algorithms: vec!["RS256".into(), "ES256".into()],
        max_token_age: DEFAULT_MAX_TOKEN_AGE,
        jwks: None,
        created_at: 0,
    };
    let keys = IssuerKeys::new(std::time::Duration::from_secs(300));
    let jwks = keys.get(&issuer.url, false).await.expect("keys fetched");
    assert_eq!(
        (issuer.discovery_requests(), issuer.jwks_requests()),
        (1, 1)
    );
    let now = test_issuer::now();
    let check = |token: &str, trusted: &TrustedIssuer| tessera_verify(token, trusted, &jwks, now);

    let github = issuer.github_claims(AUDIENCE);
    let passed = check(&issuer.sign(&github), &trusted);
    assert_eq!(
        passed.claims,
        Some(github.clone()),
        "{:?}",
        passed.failure()
    );
    let es = check(&issuer.sign_with(&github, Signing::Es256), &trusted);
    assert!(es.claims.is_some(), "{:?}", es.failure());

    let gitlab = issuer.gitlab_claims(AUDIENCE);
    let capped = check(&issuer.sign(&gitlab), &trusted);
    assert_eq!(capped.failure().map(|c| c.check), Some("lifetime"));
    let roomy = TrustedIssuer {
        max_token_age: GITLAB_LIFETIME as u64,
        ..trusted.clone()
    };
    assert!(check(&issuer.sign(&gitlab), &roomy).claims.is_some());

    for (how, failed) in [
        (Signing::AlgNone, "format"),
        (Signing::Hs256WithPublicKey, "algorithm"),
        (Signing::UnknownKid("kid-404".into()), "key"),
    ] {
        let refused = check(&issuer.sign_with(&github, how.clone()), &trusted);
        assert_eq!(refused.failure().map(|c| c.check), Some(failed), "{how:?}");
    }
}
