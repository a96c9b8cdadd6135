//! Using a login: the access token for the admin commands, refreshed
//! silently when it is about to expire (RFC 6749 §6), one process at a
//! time.

use anyhow::{Context, anyhow};
use oauth2::RefreshToken;
use url::Url;

use super::oauth;
use super::store::{self, Login, Place};
use crate::secret::Secret;

/// An access token this close to its expiry is refreshed first: a command
/// must not start with a token that dies in the middle of it.
const MARGIN_SECONDS: i64 = 60;

fn fresh(login: &Login) -> bool {
    login.access_expires_at - MARGIN_SECONDS > crate::clock::now()
}

/// The access token of the login saved for `url`, refreshed first when
/// due; `None` when there is no login.
pub async fn access_token(url: &Url) -> anyhow::Result<Option<(Secret, Login, Place)>> {
    match store::load(url).await? {
        None => return Ok(None),
        Some((login, place)) if fresh(&login) => {
            return Ok(Some((login.access_token.clone(), login, place)));
        }
        Some(_) => {}
    }
    // Another command may be refreshing this login: wait for it, then read
    // what it saved before deciding to refresh.
    let _lock = store::lock(url).await?;
    let Some((login, place)) = store::load(url).await? else {
        return Ok(None);
    };
    if fresh(&login) {
        return Ok(Some((login.access_token.clone(), login, place)));
    }
    let http = oauth::http()?;
    let answer = oauth::token_client(&login.client_id, &login.token_endpoint)
        .exchange_refresh_token(&RefreshToken::new(login.refresh_token.expose().to_owned()))
        .request_async(&http)
        .await;
    let tokens = match answer {
        Ok(tokens) => tokens,
        Err(e) if oauth::grant_is_dead(&e) => {
            store::delete(url, &place).await?;
            return Err(anyhow!(
                "your login to {url} has ended ({}): run `tessera login` again",
                oauth::describe(&e)
            ));
        }
        Err(e) => {
            return Err(anyhow!(
                "cannot refresh your login: {}",
                oauth::describe(&e)
            ));
        }
    };
    let renewed = oauth::login_from(
        url,
        &login.client_id,
        &login.token_endpoint,
        login.revocation_endpoint.as_ref(),
        &tokens,
    )
    .map(|mut renewed| {
        // A refresh answer names the scope only when it changed (§5.1).
        if renewed.scope.is_empty() {
            renewed.scope = login.scope.clone();
        }
        renewed
    })?;
    let (place, _) = store::save(&renewed)
        .await
        .context("the login was refreshed but could not be saved")?;
    Ok(Some((renewed.access_token.clone(), renewed, place)))
}
