//! Commands that run against the configuration and database directly.

use std::path::PathBuf;

use anyhow::Context;

use super::{ConfigArgs, ServeArgs};
use crate::bootstrap;
use crate::config::{Config, Overrides};
use crate::keys::master::{MASTER_KEY_ENV, PREVIOUS_MASTER_KEY_ENV};
use crate::keys::{KeyManager, MasterKey};
use crate::server::{Server, shutdown_signal};
use crate::store::Store;

pub(super) fn load(args: &ConfigArgs, overrides: Overrides) -> anyhow::Result<(Config, MasterKey)> {
    let overrides = Overrides {
        database_url: args.database_url.clone(),
        ..overrides
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    let env_key = std::env::var(MASTER_KEY_ENV).ok();
    let mut master = MasterKey::load(env_key.as_deref(), &config.keys.master_key_file)?;
    if let Ok(previous) = std::env::var(PREVIOUS_MASTER_KEY_ENV) {
        master =
            master.with_previous(MasterKey::from_base64(&previous, PREVIOUS_MASTER_KEY_ENV)?)?;
    }
    Ok((config, master))
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        issuer: args.issuer.clone(),
        database_url: None,
    };
    let (config, master) = load(&args.config, overrides)?;
    let started = std::time::Instant::now();
    let server = Server::bind(config, master).await?;
    tracing::info!(
        addr = %server.local_addr(),
        issuer = server.state().config.issuer(),
        backend = server.state().store.backend(),
        startup_ms = started.elapsed().as_millis() as u64,
        "Tessera is listening"
    );
    server.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

pub(super) async fn open(args: &ConfigArgs) -> anyhow::Result<(Config, Store, MasterKey)> {
    let (config, master) = load(args, Overrides::default())?;
    let store = Store::new(&config.database.url, 1, config.database.connect_timeout)?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok((config, store, master))
}

pub async fn migrate(args: ConfigArgs) -> anyhow::Result<()> {
    let (_, store, _) = open(&args).await?;
    println!("migrations applied ({})", store.backend());
    Ok(())
}

/// `tessera init`: the explicit, production form of the first-start
/// bootstrap. Refuses on a database that is already initialised, unless
/// `rotate` asks for a new administrator token on such a database.
pub async fn init(args: ConfigArgs, token_file: PathBuf, rotate: bool) -> anyhow::Result<()> {
    let (config, store, master) = open(&args).await?;
    let digest_key = master.token_digest_key();
    let lifetime = config.admin.token_lifetime;
    if rotate {
        let done =
            bootstrap::rotate_admin_token(&store, &digest_key, &token_file, lifetime).await?;
        println!(
            "issued a new token for administrator {}, valid for {}; it is in {}; \
             the previous one no longer works",
            done.admin_user_id,
            humantime::format_duration(lifetime),
            done.token_file.display()
        );
        return Ok(());
    }
    let keys = KeyManager::new(
        store.clone(),
        std::sync::Arc::new(master),
        config.tokens.max_lifetime,
        config.keys.rotation_period,
    );
    keys.ensure_keys().await?;
    let done = bootstrap::initialize(&store, &digest_key, &token_file, lifetime).await?;
    println!(
        "initialised: administrator {} created; its token is in {}",
        done.admin_user_id,
        done.token_file.display()
    );
    Ok(())
}
