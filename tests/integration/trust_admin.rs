//! Trusted issuers and trust policies (issue 9 items 1, 2): the store's
//! rules, the admin API and the CLI, on both backends.

use serde_json::json;
use tessera::audit::{Actor, Event, Outcome};
use tessera::federation::admin;
use tessera::federation::model::{Condition, MatchKind};
use tessera::store::{
    NewAuditRecord, ServiceUserRecord, ServiceUserStore, StoreError, TrustPolicyChange,
    TrustPolicyRecord, TrustStore, TrustedIssuerRecord,
};

use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(store_keeps_trusts_and_their_references,);

fn event(action: &'static str) -> NewAuditRecord {
    Event::new(Actor::system(), action, Outcome::Success).into_record(0)
}

fn service_user(id: &str) -> ServiceUserRecord {
    ServiceUserRecord {
        id: id.into(),
        name: id.into(),
        description: String::new(),
        owner: String::new(),
        is_admin: false,
        created_at: 1,
        scopes: "deploy read".into(),
        audiences: String::new(),
        enabled: true,
        max_token_lifetime: None,
    }
}

fn policy(name: &str, issuer: &str, user: &str) -> TrustPolicyRecord {
    TrustPolicyRecord {
        name: name.into(),
        issuer: issuer.into(),
        audience: "https://tessera.example".into(),
        allow_multiple_audiences: false,
        service_user: user.into(),
        scopes: "deploy".into(),
        lifetime: 900,
        conditions: json!([{"claim": "repository_id", "match": "exact", "value": "42"}])
            .to_string(),
        refused_events: "pull_request_target".into(),
        name_only: false,
        created_at: 1,
        updated_at: 1,
    }
}

async fn store_keeps_trusts_and_their_references(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = &app.state.store;
    let issuer = "https://token.actions.githubusercontent.com";
    store
        .create_service_user(service_user("su_ci"), event("service_user.created"))
        .await
        .unwrap();
    store
        .create_trusted_issuer(
            TrustedIssuerRecord {
                issuer: issuer.into(),
                algorithms: "RS256".into(),
                max_token_age: 3600,
                jwks: None,
                created_at: 1,
            },
            event("trust.issuer_added"),
        )
        .await
        .unwrap();
    assert!(
        admin::load(store, "https://other.example")
            .await
            .unwrap()
            .is_none()
    );

    // A policy needs an existing issuer and service user.
    let missing = store
        .create_trust_policy(policy("p", "https://nope.example", "su_ci"), event("x"))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let missing = store
        .create_trust_policy(policy("p", issuer, "su_nobody"), event("x"))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");

    store
        .create_trust_policy(policy("deploy", issuer, "su_ci"), event("trust.created"))
        .await
        .unwrap();
    let duplicate = store
        .create_trust_policy(policy("deploy", issuer, "su_ci"), event("x"))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict)),
        "{duplicate:?}"
    );

    let (loaded, policies) = admin::load(store, issuer).await.unwrap().unwrap();
    assert_eq!(loaded.algorithms, ["RS256"]);
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].scopes, ["deploy"]);
    assert_eq!(policies[0].refused_events, ["pull_request_target"]);
    assert_eq!(
        policies[0].conditions,
        [Condition {
            claim: "repository_id".into(),
            kind: MatchKind::Exact,
            value: "42".into(),
            ignore_case: false,
        }]
    );

    // Referenced issuer and service user cannot go.
    let in_use = store
        .delete_trusted_issuer(issuer.into(), event("x"), |_| Ok::<_, ()>(()))
        .await;
    assert!(
        matches!(&in_use, Err(StoreError::InUse(by)) if by.contains("deploy")),
        "{in_use:?}"
    );
    let in_use = store.delete_service_user("su_ci".into(), event("x")).await;
    assert!(
        matches!(&in_use, Err(StoreError::InUse(by)) if by.contains("deploy")),
        "{in_use:?}"
    );

    // A change is read-modify-write; a refusal writes nothing.
    let refused = store
        .change_trust_policy("deploy".into(), |_| Err::<(TrustPolicyChange, ()), _>("no"))
        .await
        .unwrap();
    assert_eq!(refused, Err("no"));
    store
        .change_trust_policy("deploy".into(), |mut current| {
            current.lifetime = 600;
            current.updated_at = 2;
            Ok::<_, ()>((
                TrustPolicyChange {
                    policy: current,
                    event: event("trust.updated"),
                },
                (),
            ))
        })
        .await
        .unwrap()
        .unwrap();
    let changed = store.trust_policy("deploy".into()).await.unwrap().unwrap();
    assert_eq!((changed.lifetime, changed.updated_at), (600, 2));
    let missing = store
        .change_trust_policy("nope".into(), |_| Err::<(TrustPolicyChange, ()), ()>(()))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)));

    // Precondition refused: still there.
    let kept = store
        .delete_trust_policy("deploy".into(), event("x"), |_| Err::<(), _>("412"))
        .await
        .unwrap();
    assert_eq!(kept, Err("412"));
    store
        .delete_trust_policy("deploy".into(), event("trust.deleted"), |_| Ok::<_, ()>(()))
        .await
        .unwrap()
        .unwrap();
    store
        .delete_trusted_issuer(issuer.into(), event("trust.issuer_removed"), |_| {
            Ok::<_, ()>(())
        })
        .await
        .unwrap()
        .unwrap();
    assert!(store.list_trusted_issuers().await.unwrap().is_empty());
    store
        .delete_service_user("su_ci".into(), event("service_user.deleted"))
        .await
        .unwrap();
}
