//! A relying party as applications build one: the `openidconnect` crate,
//! configured from Tessera's discovery document (OIDC Discovery 1.0).

use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{
    ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, RedirectUrl,
};

use super::TestApp;

/// What `CoreClient::from_provider_metadata` gives: the authorization
/// endpoint set, the token and userinfo endpoints as discovery says.
pub type RelyingParty = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The relying party `client_id` (a confidential client with `secret`)
/// redirecting to `redirect`, and the HTTP client it talks to Tessera with
/// (no redirects followed, as the crate requires).
pub async fn discover(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    redirect: &str,
) -> (RelyingParty, openidconnect::reqwest::Client) {
    let http = openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.url.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.to_owned()),
        Some(ClientSecret::new(secret.to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).unwrap());
    (client, http)
}
