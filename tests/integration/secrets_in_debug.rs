//! Secrets never reach `Debug` output (issue 8, item 12): each request and
//! record type that carries a client secret, token or assertion is built
//! with a known secret and formatted, and the secret must not appear.

use clap::Parser;
use tessera::cli::Cli;
use tessera::keys::MasterKey;
use tessera::oauth::token::{RequestContext, TokenRequest, TokenResponse};
use tessera::secret::Secret;
use tessera::tokens::opaque::{OpaqueToken, TokenKind};

/// JWT-shaped, so it is in the grammar of every parameter it is sent as.
const SECRET: &str =
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzdXAzci1zM2NyZXQifQ.c3VwM3ItczNjcmV0LXNpZ25hdHVyZQ";

fn assert_hidden(what: &str, formatted: String) {
    assert!(
        !formatted.contains(SECRET),
        "{what} shows the secret in Debug: {formatted}"
    );
}

#[test]
fn token_requests_and_credentials_hide_their_secrets() {
    let names = [
        "client_secret",
        "client_assertion",
        "assertion",
        "token",
        "refresh_token",
        "code",
        "code_verifier",
        "device_code",
        "subject_token",
        "actor_token",
        "password",
    ];
    for name in names {
        let request = TokenRequest::from_pairs(vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), "svc".into()),
            (name.into(), SECRET.into()),
        ])
        .expect("a well-formed request");
        assert_eq!(request.get(name), Some(SECRET), "{name} is still readable");
        assert_hidden(name, format!("{request:?}"));
        let presented = request.credentials(Some(Secret::new(SECRET)));
        assert_hidden("PresentedCredentials", format!("{presented:?}"));
        assert_hidden("PresentedCredentials", format!("{presented:#?}"));
    }
    let context = RequestContext {
        basic: Some(Secret::new(SECRET)),
        remote: None,
    };
    assert_hidden("RequestContext.basic", format!("{:?}", context.basic));
}

#[test]
fn issued_tokens_hide_in_debug_but_serialise_once() {
    let response = TokenResponse {
        access_token: Secret::new(SECRET),
        token_type: "Bearer",
        expires_in: 900,
        scope: None,
        issued_token_type: None,
        refresh_token: Some(Secret::new(SECRET)),
        refresh_token_expires_in: Some(3600),
        id_token: Some(Secret::new(SECRET)),
    };
    assert_hidden("TokenResponse", format!("{response:?}"));
    let body = serde_json::to_string(&response).unwrap();
    assert!(
        body.contains(SECRET),
        "the response body must carry the token"
    );

    let opaque = OpaqueToken::generate(TokenKind::Bootstrap);
    assert_hidden("OpaqueToken", format!("{opaque:?}"));
    assert!(!format!("{opaque:?}").contains(opaque.expose()));

    let master = MasterKey::generate();
    assert!(!format!("{master:?}").contains(master.to_base64().as_str()));
}

#[test]
fn the_cli_token_flag_is_hidden_in_debug() {
    let cli = Cli::try_parse_from(["tessera", "keys", "list", "--token", SECRET])
        .expect("the command parses");
    assert_hidden("Cli", format!("{cli:?}"));
}
