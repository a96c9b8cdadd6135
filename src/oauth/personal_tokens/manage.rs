//! The lifecycle: create, list, show, disable, enable, roll, revoke and
//! transfer. Each change locks the token's row, checks, writes and audits
//! in one transaction (`PersonalTokenStore`), so it holds on every replica
//! the moment it returns: no replica caches these tokens.

use serde_json::json;

use super::policy::{self, OwnerRights};
use super::view::{CreatedToken, TokenView};
use super::{ListOptions, RollSpec, TokenSpec, TransferSpec};
use crate::audit::{ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::api_scopes::{ADMIN, ADMIN_READ, TOKENS_SELF};
use crate::oauth::bearer::Principal;
use crate::oauth::error::named;
use crate::oauth::{Core, ErrorCode, OAuthError};
use crate::random::new_id;
use crate::store::{
    AccessTokenRecord, Changed, CredentialStore, PersonalTokenStore, TokenListing, TokenScope,
};
use crate::tokens::opaque::{OpaqueToken, TokenKind};

/// How far the caller's rights reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// An administrator's token with `admin` (or `admin:read`, to read).
    All,
    /// `tokens:self`: the caller's own tokens, and the machine tokens of
    /// the service users they own or answer for.
    Own,
}

pub(crate) fn reach(caller: &Principal, write: bool) -> Result<Reach, OAuthError> {
    if caller.is_admin && (caller.has_scope(ADMIN) || (!write && caller.has_scope(ADMIN_READ))) {
        Ok(Reach::All)
    } else if caller.has_scope(TOKENS_SELF) {
        Ok(Reach::Own)
    } else {
        Err(OAuthError::insufficient_scope(
            TOKENS_SELF,
            "managing tokens needs the tokens:self scope (or an administrator's admin scope)",
        ))
    }
}

fn not_found() -> OAuthError {
    OAuthError::not_found("no such token")
}

pub(crate) fn is_human(caller: &Principal) -> bool {
    caller.kind == ActorKind::Human
}

/// Whether `caller` may manage `listing` with `reach`: its own token, a
/// machine token it answers for, or one of a service user it owns.
async fn may_manage(
    core: &Core,
    caller: &Principal,
    reach: Reach,
    listing: &TokenListing,
) -> Result<bool, OAuthError> {
    let token = &listing.token;
    if reach == Reach::All || token.owner_id == caller.id {
        return Ok(true);
    }
    if !is_human(caller) || token.owner_kind == ActorKind::Human.as_str() {
        return Ok(false);
    }
    if token.responsible_id.as_deref() == Some(&caller.id) {
        return Ok(true);
    }
    let service_user = core.store.service_user(token.owner_id.clone()).await?;
    Ok(service_user.is_some_and(|u| u.owner_id.as_deref() == Some(&caller.id)))
}

/// The token `id`, if the caller may see (`write`: change) it; 404
/// otherwise, so that nobody learns of others' tokens.
async fn find(
    core: &Core,
    caller: &Principal,
    id: &str,
    write: bool,
) -> Result<TokenListing, OAuthError> {
    let reach = reach(caller, write)?;
    let listing = core
        .store
        .personal_token(id.to_owned())
        .await?
        .ok_or_else(not_found)?;
    if may_manage(core, caller, reach, &listing).await? {
        Ok(listing)
    } else {
        Err(not_found())
    }
}

/// The owner of a new token, and who answers for it.
struct NewOwner<'a> {
    id: String,
    machine: bool,
    responsible: Option<String>,
    rights: OwnerRights<'a>,
    name: String,
    /// A service user's `max_token_lifetime`.
    cap: Option<std::time::Duration>,
}

/// The caller, a person, as the owner of their own personal token.
fn person_owner(caller: &Principal) -> NewOwner<'static> {
    NewOwner {
        id: caller.id.clone(),
        machine: false,
        responsible: None,
        rights: OwnerRights::Human {
            is_admin: caller.is_admin,
        },
        name: caller.name.clone(),
        cap: None,
    }
}

async fn service_owner<'a>(
    core: &Core,
    caller: &Principal,
    id: &str,
    scopes: &'a mut Vec<String>,
) -> Result<NewOwner<'a>, OAuthError> {
    let missing = || OAuthError::not_found(format!("no service user {}", named(id)));
    if !crate::oauth::syntax::is_identifier(id) {
        return Err(missing());
    }
    let user = core
        .store
        .service_user(id.to_owned())
        .await?
        .ok_or_else(missing)?;
    let allowed = reach(caller, true)? == Reach::All
        || user.id == caller.id
        || (is_human(caller) && user.owner_id.as_deref() == Some(&caller.id));
    if !allowed {
        return Err(missing());
    }
    if !user.enabled {
        return Err(OAuthError::new(
            ErrorCode::Conflict,
            "the service user is disabled: enable it first",
        ));
    }
    // Its owner answers for it; without one, nobody does: its tokens are
    // orphaned from the start.
    let responsible = user.owner_id.clone();
    let cap = user
        .max_token_lifetime
        .map(|secs| std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0)));
    *scopes = user.scopes.split_whitespace().map(str::to_owned).collect();
    Ok(NewOwner {
        id: user.id,
        machine: true,
        responsible,
        rights: OwnerRights::Service {
            is_admin: user.is_admin,
            scopes,
        },
        name: user.name,
        cap,
    })
}

/// `POST /admin/v1/tokens`: a personal token for a person, a machine token
/// for a service user (the caller, or `service_user`).
pub async fn create(
    core: &Core,
    caller: &Principal,
    spec: TokenSpec,
    remote: Option<String>,
) -> Result<CreatedToken, OAuthError> {
    reach(caller, true)?;
    let config = &core.config.personal_tokens;
    if !crate::oauth::client::is_name(&spec.name) {
        return Err(OAuthError::invalid_request(crate::oauth::client::NAME_RULE));
    }
    policy::check_env(config, &spec.env)?;
    let mut service_scopes = Vec::new();
    let owner = match (&spec.service_user, is_human(caller)) {
        (Some(id), _) => service_owner(core, caller, id, &mut service_scopes).await?,
        (None, true) => person_owner(caller),
        (None, false) => {
            let id = caller.id.clone();
            service_owner(core, caller, &id, &mut service_scopes).await?
        }
    };
    let now = clock::now();
    let lifetime = policy::lifetime(config, &spec.expires, &spec.env, owner.machine)?;
    let lifetime = policy::within_caps(lifetime, owner.cap, caller, now)?;
    let scopes = policy::scopes(spec.scope.as_deref(), &owner.rights, caller)?;
    let lifetime_secs = lifetime.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let kind = if owner.machine {
        TokenKind::Machine
    } else {
        TokenKind::Pat
    };
    let (token, record) = new_token(core, kind, &spec.env, now, lifetime_secs);
    let record = AccessTokenRecord {
        owner_id: owner.id.clone(),
        owner_kind: if owner.machine { "service" } else { "human" }.to_owned(),
        name: spec.name.trim().to_owned(),
        scopes,
        responsible_id: owner.responsible,
        ..record
    };
    let event = Event::new(caller.actor(), "token.created", Outcome::Success)
        .target(record.id.clone())
        .remote(remote)
        .details(json!({
            "kind": kind.as_str(),
            "name": record.name,
            "env": record.env,
            "owner_id": record.owner_id,
            "scope": record.scopes,
            "expires_at": record.expires_at,
        }))
        .into_record(clock::now_ms());
    let limit = config.max_active_per_owner;
    core.store
        .create_personal_token(record.clone(), limit, now, event)
        .await?
        .map_err(|refused| {
            OAuthError::new(
                ErrorCode::Conflict,
                format!(
                    "{} already holds {} live tokens, the most allowed \
                     (personal_tokens.max_active_per_owner): revoke one with \
                     `tessera token revoke ID`, or wait for one to expire, to free a slot",
                    named(&owner.name),
                    refused.limit
                ),
            )
        })?;
    let listing = core
        .store
        .personal_token(record.id.clone())
        .await?
        .ok_or_else(not_found)?;
    Ok(CreatedToken {
        view: TokenView::new(&listing, now),
        token,
    })
}

/// A fresh token of `kind` and its row, owned by nobody yet.
pub(crate) fn new_token(
    core: &Core,
    kind: TokenKind,
    env: &str,
    now: i64,
    lifetime_secs: Option<i64>,
) -> (OpaqueToken, AccessTokenRecord) {
    // Only an agent bootstrap token may go without a label.
    let token = if env.is_empty() {
        OpaqueToken::generate(kind)
    } else {
        OpaqueToken::generate_for_env(kind, env)
    };
    let parsed = token.parse().expect("a generated token parses");
    let value = token.expose();
    let record = AccessTokenRecord {
        id: new_id(),
        kind: kind.as_str().to_owned(),
        lookup: parsed.lookup,
        digest: token.digest(&core.digest_key),
        owner_id: String::new(),
        owner_kind: String::new(),
        name: String::new(),
        scopes: String::new(),
        created_at: now,
        expires_at: lifetime_secs.map(|s| now.saturating_add(s)),
        last_used_at: None,
        disabled_at: None,
        revoked_at: None,
        env: env.to_owned(),
        responsible_id: None,
        lifetime_secs,
        last_used_ip: None,
        use_count: 0,
        replaced_by: None,
        last_four: value[value.len() - 4..].to_owned(),
        max_uses: None,
        expiry_audited_at: None,
    };
    (token, record)
}

/// The tokens the caller may see, newest first.
pub async fn list(
    core: &Core,
    caller: &Principal,
    options: ListOptions,
) -> Result<Vec<TokenView>, OAuthError> {
    let reach = reach(caller, false)?;
    let scope = match reach {
        _ if options.own_only => TokenScope {
            owners: vec![caller.id.clone()],
            env: options.env.clone(),
            ..TokenScope::default()
        },
        Reach::All => TokenScope {
            all: true,
            env: options.env.clone(),
            ..TokenScope::default()
        },
        Reach::Own => {
            let mut owners = vec![caller.id.clone()];
            if is_human(caller) {
                owners.extend(core.store.service_users_owned_by(caller.id.clone()).await?);
            }
            TokenScope {
                all: false,
                owners,
                responsible: is_human(caller).then(|| caller.id.clone()),
                env: options.env.clone(),
            }
        }
    };
    let now = clock::now();
    Ok(core
        .store
        .list_personal_tokens(scope, options.include_revoked)
        .await?
        .iter()
        .filter(|l| !options.orphaned || l.is_orphaned())
        .map(|l| TokenView::new(l, now))
        .collect())
}

pub async fn show(core: &Core, caller: &Principal, id: &str) -> Result<TokenView, OAuthError> {
    let listing = find(core, caller, id, false).await?;
    Ok(TokenView::new(&listing, clock::now()))
}

/// What a change's `apply` returns: the event's details, a token to
/// insert with its own event, the owner's limit, and a value.
type Applied<T> = (
    serde_json::Value,
    Option<(AccessTokenRecord, crate::store::NewAuditRecord)>,
    u32,
    T,
);

/// One state change, audited as `action`: `apply` edits the row or
/// refuses. The row is re-read under its lock; if its owner changed since
/// the caller's rights were checked, the change is refused.
async fn change<T, F>(
    core: &Core,
    caller: &Principal,
    id: &str,
    action: &'static str,
    remote: Option<String>,
    apply: F,
) -> Result<(TokenView, T), OAuthError>
where
    T: Send + 'static,
    F: FnOnce(&mut AccessTokenRecord, i64) -> Result<Applied<T>, OAuthError> + Send + 'static,
{
    let checked = find(core, caller, id, true).await?;
    let lookup = checked.token.lookup.clone();
    let actor = caller.actor();
    let outcome = core
        .store
        .change_personal_token(id.to_owned(), move |mut current: TokenListing| {
            let same_owner = current.token.owner_id == checked.token.owner_id
                && current.token.responsible_id == checked.token.responsible_id;
            if !same_owner {
                return Err(OAuthError::new(
                    ErrorCode::Conflict,
                    "the token changed hands meanwhile; try again",
                ));
            }
            let now = clock::now();
            let (details, inserted, limit, value) = apply(&mut current.token, now)?;
            let event = Event::new(actor, action, Outcome::Success)
                .target(current.token.id.clone())
                .remote(remote)
                .details(details)
                .into_record(clock::now_ms());
            Ok(Changed {
                token: current.token,
                inserted,
                event,
                value,
                limit,
            })
        })
        .await;
    // Whatever happened, this replica reads the token afresh from now on.
    core.token_cache.invalidate(&lookup);
    let value = outcome.map_err(|e| match e {
        crate::store::StoreError::NotFound => not_found(),
        other => other.into(),
    })??;
    let listing = core
        .store
        .personal_token(id.to_owned())
        .await?
        .ok_or_else(not_found)?;
    Ok((TokenView::new(&listing, clock::now()), value))
}

fn refuse_revoked(token: &AccessTokenRecord) -> Result<(), OAuthError> {
    if token.revoked_at.is_some() {
        Err(OAuthError::new(
            ErrorCode::Conflict,
            "the token was revoked; revocation is permanent",
        ))
    } else {
        Ok(())
    }
}

/// The brownout: the token stays, but every use is refused with 403.
pub async fn disable(
    core: &Core,
    caller: &Principal,
    id: &str,
    remote: Option<String>,
) -> Result<TokenView, OAuthError> {
    change(core, caller, id, "token.disabled", remote, |token, now| {
        refuse_revoked(token)?;
        token.disabled_at.get_or_insert(now);
        Ok((json!({ "env": token.env }), None, 0, ()))
    })
    .await
    .map(|(view, ())| view)
}

pub async fn enable(
    core: &Core,
    caller: &Principal,
    id: &str,
    remote: Option<String>,
) -> Result<TokenView, OAuthError> {
    change(core, caller, id, "token.enabled", remote, |token, _| {
        refuse_revoked(token)?;
        token.disabled_at = None;
        Ok((json!({ "env": token.env }), None, 0, ()))
    })
    .await
    .map(|(view, ())| view)
}

/// Permanent. Revoking a revoked token changes nothing and is no error.
pub async fn revoke(
    core: &Core,
    caller: &Principal,
    id: &str,
    remote: Option<String>,
) -> Result<TokenView, OAuthError> {
    let current = find(core, caller, id, true).await?;
    if current.token.revoked_at.is_some() {
        return Ok(TokenView::new(&current, clock::now()));
    }
    change(core, caller, id, "token.revoked", remote, |token, now| {
        token.revoked_at.get_or_insert(now);
        Ok((json!({ "env": token.env }), None, 0, ()))
    })
    .await
    .map(|(view, ())| view)
}

/// A new token with the same name, owner, environment, scopes and
/// lifetime (counted from now), and the old one revoked in the same
/// transaction, or, with a grace, expiring when the grace ends. Rolling
/// hands out a new value, so it takes the rights creating that token
/// would: a person's token only its owner rolls; a machine token its
/// service user, that user's owner or an administrator. Today's policy
/// applies: its caps, the owner's rights, the caller's own scopes and the
/// limit (a token in its grace does not count).
pub async fn roll(
    core: &Core,
    caller: &Principal,
    id: &str,
    spec: RollSpec,
    remote: Option<String>,
) -> Result<CreatedToken, OAuthError> {
    let grace = spec.grace_seconds.map(policy::grace).transpose()?;
    let checked = find(core, caller, id, true).await?;
    let old = &checked.token;
    let machine = old.kind == TokenKind::Machine.as_str();
    let mut service_scopes = Vec::new();
    let owner = if machine {
        service_owner(core, caller, &old.owner_id, &mut service_scopes)
            .await
            .map_err(|_| not_found())?
    } else if old.owner_id == caller.id && is_human(caller) {
        person_owner(caller)
    } else {
        return Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "only its owner rolls a personal access token (it would get the new value); \
             disable or revoke it instead",
        ));
    };
    let config = &core.config.personal_tokens;
    let now = clock::now();
    let lifetime = policy::rolled_lifetime(config, old.lifetime_secs, &old.env, machine)?;
    let lifetime = policy::within_caps(lifetime, owner.cap, caller, now)?;
    let scopes = policy::scopes(Some(&old.scopes), &owner.rights, caller)?;
    let kind = if machine {
        TokenKind::Machine
    } else {
        TokenKind::Pat
    };
    let lifetime_secs = lifetime.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (token, fresh) = new_token(core, kind, &old.env, now, lifetime_secs);
    let new_id = fresh.id.clone();
    let limit = config.max_active_per_owner;
    let actor = caller.actor();
    let event_remote = remote.clone();
    let rolled = move |old: &mut AccessTokenRecord, now: i64| -> Result<Applied<()>, OAuthError> {
        refuse_revoked(old)?;
        let refusal = if old.disabled_at.is_some() {
            Some("the token is disabled: enable it before rolling it")
        } else if !old.is_live(now) {
            Some("the token expired: create a new one")
        } else if old.replaced_by.is_some() {
            Some("the token was rolled already: roll its replacement")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err(OAuthError::new(ErrorCode::Conflict, refusal));
        }
        let fresh = AccessTokenRecord {
            owner_id: old.owner_id.clone(),
            owner_kind: old.owner_kind.clone(),
            name: old.name.clone(),
            scopes,
            responsible_id: old.responsible_id.clone(),
            created_at: now,
            expires_at: lifetime_secs.map(|s| now.saturating_add(s)),
            ..fresh
        };
        match grace {
            None => old.revoked_at = Some(now),
            Some(grace) => {
                let until = now.saturating_add(grace.as_secs() as i64);
                old.expires_at = Some(old.expires_at.map_or(until, |exp| exp.min(until)));
            }
        }
        old.replaced_by = Some(fresh.id.clone());
        // The new token's own story starts with where it came from.
        let created = Event::new(actor, "token.created", Outcome::Success)
            .target(fresh.id.clone())
            .remote(remote.clone())
            .details(json!({
                "kind": fresh.kind,
                "name": fresh.name,
                "env": fresh.env,
                "owner_id": fresh.owner_id,
                "scope": fresh.scopes,
                "expires_at": fresh.expires_at,
                "rolled_from": old.id,
            }))
            .into_record(clock::now_ms());
        let details = json!({
            "replaced_by": fresh.id,
            "grace_secs": grace.map(|g| g.as_secs()),
            "env": old.env,
        });
        Ok((details, Some((fresh, created)), limit, ()))
    };
    change(core, caller, id, "token.rolled", event_remote, rolled).await?;
    let listing = core
        .store
        .personal_token(new_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(CreatedToken {
        view: TokenView::new(&listing, clock::now()),
        token,
    })
}

/// Moves a machine token to another responsible person.
pub async fn transfer(
    core: &Core,
    caller: &Principal,
    id: &str,
    spec: TransferSpec,
    remote: Option<String>,
) -> Result<TokenView, OAuthError> {
    let to = crate::accounts::users::resolve(&core.store, &spec.owner)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound => {
                OAuthError::not_found(format!("owner: no user {}", named(&spec.owner)))
            }
            _ => e,
        })?;
    if to.disabled {
        return Err(OAuthError::new(
            ErrorCode::Conflict,
            "owner: that user is disabled and cannot answer for a token",
        ));
    }
    change(
        core,
        caller,
        id,
        "token.transferred",
        remote,
        move |token, _| {
            if token.kind != TokenKind::Machine.as_str() {
                return Err(OAuthError::new(
                    ErrorCode::Conflict,
                    "a personal access token belongs to its user and cannot be transferred",
                ));
            }
            refuse_revoked(token)?;
            let from = token.responsible_id.replace(to.id.clone());
            Ok((
                json!({ "from": from, "to": to.id, "to_username": to.username }),
                None,
                0,
                (),
            ))
        },
    )
    .await
    .map(|(view, ())| view)
}
