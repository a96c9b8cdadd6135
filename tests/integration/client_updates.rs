//! No lost updates in the admin API: concurrent changes of one client
//! queue up, concurrent secret rotations leave one current secret, and
//! `ETag` / `If-Match` (RFC 9110 §13.1.1) make read-modify-write safe.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::clients::register;
use crate::common::{Backend, TestApp, fail_with};
use crate::on_both_backends;

on_both_backends!(
    concurrent_disable_and_renames_never_re_enable,
    concurrent_secret_rotations_leave_one_secret,
    if_match_guards_updates_with_412,
);

fn patch(app: &TestApp, id: &str, body: Value) -> reqwest::RequestBuilder {
    app.http
        .patch(app.endpoint(&format!("/admin/v1/clients/{id}")))
        .bearer_auth(app.admin_token())
        .json(&body)
}

async fn client(app: &TestApp, id: &str) -> Value {
    let response = app.admin_get(&format!("/admin/v1/clients/{id}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `client update --disable` and `client update --name` at once: whatever
/// order they commit in, the client ends disabled with the new name.
async fn concurrent_disable_and_renames_never_re_enable(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, _) = register(&app, json!({"name": "racer"})).await;
    for round in 0..15 {
        let enable = patch(&app, &id, json!({"enabled": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(enable.status(), 200);
        let mut requests = vec![patch(&app, &id, json!({"enabled": false})).send()];
        for n in 0..4 {
            let name = format!("round-{round}-{n}");
            requests.push(patch(&app, &id, json!({ "name": name })).send());
        }
        for response in join_all(requests).await {
            assert_eq!(response.unwrap().status(), 200, "round {round}");
        }
        let now = client(&app, &id).await;
        assert_eq!(
            now["enabled"], false,
            "round {round}: a rename re-enabled it"
        );
        assert!(
            now["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("round-{round}-")),
            "round {round}: {now}"
        );
    }
}

async fn works(app: &TestApp, id: &str, secret: &str) -> bool {
    app.http
        .post(app.endpoint("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .status()
        == 200
}

/// Several rotations without grace at once: exactly one new secret works,
/// and the original one does not.
async fn concurrent_secret_rotations_leave_one_secret(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (id, original) = register(&app, json!({"name": "rotating"})).await;
    let original = original.unwrap();
    let path = format!("/admin/v1/clients/{id}/secret");
    for round in 0..8 {
        let body = json!({"grace_seconds": 0});
        let responses = join_all((0..6).map(|_| app.admin_post(&path, &body))).await;
        let mut secrets = Vec::new();
        for response in responses {
            assert_eq!(response.status(), 200, "round {round}");
            let body: Value = response.json().await.unwrap();
            secrets.push(body["client_secret"].as_str().unwrap().to_owned());
        }
        let mut valid = 0;
        for secret in &secrets {
            if works(&app, &id, secret).await {
                valid += 1;
            }
        }
        assert_eq!(
            valid, 1,
            "round {round}: one current secret after concurrent rotations"
        );
        assert!(!works(&app, &id, &original).await);
    }
}

async fn if_match_guards_updates_with_412(backend: Backend) {
    let app = TestApp::start(backend).await;
    let created = app
        .admin_post("/admin/v1/clients", &json!({"name": "tagged"}))
        .await;
    assert_eq!(created.status(), 201);
    let created_tag = created.headers()["etag"].to_str().unwrap().to_owned();
    let id = created.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/admin/v1/clients/{id}");

    let read = app.admin_get(&path).await;
    let tag = read.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(tag, created_tag, "create and get agree on the tag");
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "a strong tag: {tag}"
    );

    // Someone else changes it between our read and our write.
    let other = patch(&app, &id, json!({"name": "theirs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    let their_tag = other.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(their_tag, tag);

    let stale = patch(&app, &id, json!({"enabled": false}))
        .header("if-match", &tag)
        .send()
        .await
        .unwrap();
    fail_with(stale, 412, "precondition_failed").await;
    let now = client(&app, &id).await;
    assert_eq!(now["enabled"], true, "a failed precondition writes nothing");
    assert_eq!(now["name"], "theirs");

    let weak = patch(&app, &id, json!({"enabled": false}))
        .header("if-match", format!("W/{their_tag}"))
        .send()
        .await
        .unwrap();
    fail_with(weak, 412, "precondition_failed").await;

    let fresh = patch(&app, &id, json!({"enabled": false}))
        .header("if-match", &their_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    let new_tag = fresh.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(client(&app, &id).await["enabled"], false);
    let reread = app.admin_get(&path).await;
    assert_eq!(reread.headers()["etag"].to_str().unwrap(), new_tag);

    let rotate = app
        .http
        .post(app.endpoint(&format!("{path}/secret")))
        .bearer_auth(app.admin_token())
        .header("if-match", &tag)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    fail_with(rotate, 412, "precondition_failed").await;
    let rotate = app
        .http
        .post(app.endpoint(&format!("{path}/secret")))
        .bearer_auth(app.admin_token())
        .header("if-match", "*")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status(), 200);

    // Each rotation changes the ETag, so two scripts that read the same
    // version cannot both rotate (the second would demote the first's new
    // secret to its grace period).
    let tag = etag_of(app.admin_get(&path).await);
    let rotate_with = |tag: String| {
        app.http
            .post(app.endpoint(&format!("{path}/secret")))
            .bearer_auth(app.admin_token())
            .header("if-match", tag)
            .json(&json!({}))
            .send()
    };
    assert_eq!(rotate_with(tag.clone()).await.unwrap().status(), 200);
    fail_with(rotate_with(tag).await.unwrap(), 412, "precondition_failed").await;

    // DELETE evaluates If-Match first (RFC 9110 §13.2.1); several field
    // lines are one list (RFC 9110 §5.3).
    let delete_with = |tags: Vec<String>| {
        let mut request = app
            .http
            .delete(app.endpoint(&path))
            .bearer_auth(app.admin_token());
        for tag in tags {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    let stale = delete_with(vec!["\"stale\"".into()]).await.unwrap();
    fail_with(stale, 412, "precondition_failed").await;
    assert_eq!(app.admin_get(&path).await.status(), 200, "nothing deleted");
    let current = etag_of(app.admin_get(&path).await);
    let deleted = delete_with(vec!["\"stale\"".into(), current])
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.admin_get(&path).await.status(), 404);

    let user = app
        .admin_post("/admin/v1/service-users", &json!({"name": "robot"}))
        .await;
    assert_eq!(user.status(), 201);
    let user_tag = user.headers()["etag"].to_str().unwrap().to_owned();
    let user_id = user.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = app
        .admin_get(&format!("/admin/v1/service-users/{user_id}"))
        .await;
    assert_eq!(read.headers()["etag"].to_str().unwrap(), user_tag);
}

fn etag_of(response: reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}
