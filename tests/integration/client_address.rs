//! The client's address behind a reverse proxy (`server.trusted_proxies`):
//! forwarding headers count only from a trusted peer, read right to left up
//! to the first untrusted hop; the audit log records that address.

use serde_json::Value;

use crate::common::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_trusted_proxy_names_the_client,
    a_spoofed_header_is_ignored,
    rfc_7239_forwarded_from_a_trusted_proxy,
);

/// Sends a failed client authentication with `header: value`, and returns
/// the address its audit event records.
async fn audited_address(app: &TestApp, header: &str, value: &str) -> String {
    let response = app
        .http
        .post(app.endpoint("/oauth/token"))
        .basic_auth("nobody", Some("wrong"))
        .header(header, value)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let page: Value = app
        .admin_get("/admin/v1/audit?action=client.auth_failed&limit=1")
        .await
        .json()
        .await
        .unwrap();
    page["events"][0]["remote_addr"]
        .as_str()
        .expect("the event records an address")
        .to_owned()
}

async fn a_trusted_proxy_names_the_client(backend: Backend) {
    // The test connects from 127.0.0.1: that peer is the trusted proxy.
    let app = TestApp::builder(backend)
        .config("[server]\ntrusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n")
        .start()
        .await;
    assert_eq!(
        audited_address(&app, "x-forwarded-for", "198.51.100.7").await,
        "198.51.100.7"
    );
    // The client wrote the first hop itself; a trusted proxy appended the
    // address it saw, then another trusted proxy its own.
    assert_eq!(
        audited_address(
            &app,
            "x-forwarded-for",
            "203.0.113.66, 198.51.100.8, 10.1.2.3"
        )
        .await,
        "198.51.100.8"
    );
    // A hop a trusted proxy could not name stops the walk at that proxy.
    assert_eq!(
        audited_address(&app, "x-forwarded-for", "198.51.100.9, not-an-address").await,
        "127.0.0.1"
    );
    // The other header is the client's own: never read.
    assert_eq!(
        audited_address(&app, "forwarded", "for=203.0.113.66").await,
        "127.0.0.1"
    );
}

async fn a_spoofed_header_is_ignored(backend: Backend) {
    // No trusted proxies (the default): the peer is the client.
    let app = TestApp::start(backend).await;
    assert_eq!(
        audited_address(&app, "x-forwarded-for", "198.51.100.7").await,
        "127.0.0.1"
    );
    assert_eq!(
        audited_address(&app, "forwarded", "for=198.51.100.7").await,
        "127.0.0.1"
    );
}

async fn rfc_7239_forwarded_from_a_trusted_proxy(backend: Backend) {
    let app = TestApp::builder(backend)
        .config(
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\nforwarding_header = \"forwarded\"\n",
        )
        .start()
        .await;
    assert_eq!(
        audited_address(
            &app,
            "forwarded",
            "for=203.0.113.66, for=\"[2001:db8::7]:4711\";proto=https"
        )
        .await,
        "2001:db8::7"
    );
    assert_eq!(
        audited_address(&app, "x-forwarded-for", "198.51.100.7").await,
        "127.0.0.1"
    );
}
