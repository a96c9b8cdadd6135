//! `tessera trust …`: trusted issuers and trust policies for CI federation
//! (issue 9). Presets expand here, client-side, into ordinary conditions
//! that the server stores and shows: nothing is implied.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::AdminClient;
use super::keys::print_json;
use super::trust_show::{show_issuer, show_issuers, show_policies, show_policy};
use crate::federation::model::{Condition, MatchKind};
use crate::federation::presets::{
    GITHUB_ISSUER, GITHUB_REFUSED_EVENTS, GITLAB_ISSUER, GitHubRepo, GitLabProject,
    github_conditions, github_enterprise_issuer, gitlab_conditions, gitlab_issuer,
};

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// The issuers whose tokens may be exchanged.
    #[command(subcommand)]
    Issuer(IssuerCommand),
    /// Create a trust policy: which tokens of an issuer act as which
    /// service user, with which scopes.
    Create {
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// List trust policies.
    List,
    /// Show a trust policy with its conditions.
    Show { name: String },
    /// Change a trust policy: the options given change; any condition
    /// option (or preset) replaces all the conditions.
    Update {
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Delete a trust policy.
    Delete { name: String },
    /// Dry-run a token: every check the exchange makes, reported; nothing
    /// is issued and the token stays usable.
    Test(super::trust_test::TrustTestArgs),
}

#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Trust an issuer: its URL, or a preset.
    Add {
        /// The issuer URL (https, or http on loopback), unless a preset is given.
        #[arg(value_name = "URL", required_unless_present_any = ["github", "github_enterprise", "gitlab"])]
        issuer: Option<String>,
        /// GitHub Actions (https://token.actions.githubusercontent.com).
        #[arg(long, conflicts_with_all = ["issuer", "github_enterprise", "gitlab"])]
        github: bool,
        /// GitHub Enterprise Server: https://HOST/_services/token.
        #[arg(long, value_name = "HOST", conflicts_with_all = ["issuer", "gitlab"])]
        github_enterprise: Option<String>,
        /// GitLab: https://gitlab.com, or a self-managed instance's URL.
        #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "",
            conflicts_with = "issuer")]
        gitlab: Option<String>,
        /// An accepted signature algorithm (repeatable; default RS256 and ES256).
        #[arg(long = "alg")]
        algorithms: Vec<String>,
        /// The longest lifetime (exp - iat) an incoming token may have
        /// (default 1h; 2h with --gitlab).
        #[arg(long, value_parser = humantime::parse_duration)]
        max_token_age: Option<Duration>,
        /// A static JWK Set to verify with instead of discovery.
        #[arg(long)]
        jwks_file: Option<PathBuf>,
    },
    /// List trusted issuers.
    List,
    /// Stop trusting an issuer (refused while a policy names it).
    Remove {
        #[arg(value_name = "URL")]
        issuer: String,
    },
}

/// GitLab's ID tokens live as long as the job (its timeout, 1 h by
/// default) plus five minutes: the GitLab preset's cap on their lifetime.
const GITLAB_MAX_TOKEN_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// What `trust create` and `trust update` take.
#[derive(Debug, Default, Args)]
pub struct PolicyArgs {
    /// The trusted issuer (default with a preset: GitHub's or GitLab.com's).
    #[arg(long)]
    issuer: Option<String>,
    /// What the incoming token's aud must contain (default: this server's issuer URL).
    #[arg(long)]
    audience: Option<String>,
    /// The service user's id.
    #[arg(long)]
    service_user: Option<String>,
    /// Space-separated scopes (each one the service user may ask for).
    #[arg(long)]
    scope: Option<String>,
    /// How long the issued token lives (default 15m, at most 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    lifetime: Option<Duration>,
    /// Accept tokens with several audiences.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    allow_multiple_audiences: Option<bool>,
    /// CLAIM=VALUE: the claim equals VALUE (repeatable).
    #[arg(long = "match", value_name = "CLAIM=VALUE")]
    matches: Vec<String>,
    /// CLAIM=PATTERN: an anchored glob; * stays within a segment (never
    /// crosses / or :), ** does not (repeatable).
    #[arg(long = "glob", value_name = "CLAIM=PATTERN")]
    globs: Vec<String>,
    /// CLAIM=PATTERN: an anchored regular expression (repeatable).
    #[arg(long = "regex", value_name = "CLAIM=PATTERN")]
    regexes: Vec<String>,
    /// Compare this claim's conditions ignoring case (repeatable).
    #[arg(long = "ignore-case", value_name = "CLAIM")]
    ignore_case: Vec<String>,
    /// Save conditions that match on names alone (names can be
    /// re-registered by someone else).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    force_name_only: Option<bool>,
    /// With --github-repo: accept this event_name after all (e.g.
    /// pull_request_target, refused by default) (repeatable).
    #[arg(long = "allow-event", value_name = "EVENT")]
    allow_events: Vec<String>,
    /// GitHub preset: ORG/REPO.
    #[arg(long, requires_all = ["github_repo_id", "github_owner_id"], conflicts_with = "gitlab_project")]
    github_repo: Option<String>,
    #[arg(long, requires = "github_repo")]
    github_repo_id: Option<u64>,
    #[arg(long, requires = "github_repo")]
    github_owner_id: Option<u64>,
    /// With a preset: the ref (GitHub: refs/heads/main; GitLab: main).
    #[arg(long = "ref", value_name = "REF")]
    git_ref: Option<String>,
    /// GitHub preset: the deployment environment.
    #[arg(long, requires = "github_repo")]
    environment: Option<String>,
    /// GitHub preset: the calling workflow, ORG/REPO/.github/workflows/F.yml@REF (workflow_ref).
    #[arg(long, requires = "github_repo")]
    workflow: Option<String>,
    /// GitHub preset: the reusable workflow running the job (job_workflow_ref).
    #[arg(long, requires = "github_repo")]
    job_workflow: Option<String>,
    /// GitLab preset: GROUP/PROJECT.
    #[arg(long, requires = "gitlab_project_id")]
    gitlab_project: Option<String>,
    #[arg(long, requires = "gitlab_project")]
    gitlab_project_id: Option<u64>,
    /// GitLab preset: only protected branches and tags.
    #[arg(long, requires = "gitlab_project")]
    protected_ref: bool,
}

/// A path segment: the value percent-encoded, so a URL or any name stays
/// one segment.
pub(super) fn segment(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).collect()
}

fn condition(flag: &str, text: &str, kind: MatchKind) -> anyhow::Result<Condition> {
    let Some((claim, value)) = text.split_once('=') else {
        bail!("--{flag} expects CLAIM=VALUE, got {text:?}");
    };
    if claim.is_empty() {
        bail!("--{flag} expects CLAIM=VALUE with a claim name, got {text:?}");
    }
    Ok(Condition {
        claim: claim.to_owned(),
        kind,
        value: value.to_owned(),
        ignore_case: false,
    })
}

impl PolicyArgs {
    fn uses_preset(&self) -> bool {
        self.github_repo.is_some() || self.gitlab_project.is_some()
    }

    /// The conditions the options give (presets first), or `None` when no
    /// condition option is given.
    fn conditions(&self) -> anyhow::Result<Option<Vec<Condition>>> {
        let mut conditions = Vec::new();
        if let Some(repository) = &self.github_repo {
            let preset = GitHubRepo {
                repository: repository.clone(),
                repository_id: self.github_repo_id.unwrap_or(0),
                owner_id: self.github_owner_id.unwrap_or(0),
                git_ref: self.git_ref.clone(),
                environment: self.environment.clone(),
                workflow: self.workflow.clone(),
                job_workflow: self.job_workflow.clone(),
            };
            conditions.extend(github_conditions(&preset).map_err(anyhow::Error::msg)?);
        } else if let Some(project) = &self.gitlab_project {
            let preset = GitLabProject {
                project: project.clone(),
                project_id: self.gitlab_project_id.unwrap_or(0),
                git_ref: self.git_ref.clone(),
                protected_ref: self.protected_ref,
            };
            conditions.extend(gitlab_conditions(&preset).map_err(anyhow::Error::msg)?);
        } else if self.git_ref.is_some() {
            bail!("--ref goes with --github-repo or --gitlab-project; otherwise use --match ref=…");
        }
        for text in &self.matches {
            conditions.push(condition("match", text, MatchKind::Exact)?);
        }
        for text in &self.globs {
            conditions.push(condition("glob", text, MatchKind::Glob)?);
        }
        for text in &self.regexes {
            conditions.push(condition("regex", text, MatchKind::Regex)?);
        }
        if conditions.is_empty() {
            if !self.ignore_case.is_empty() {
                bail!("--ignore-case names a claim of the conditions given with it");
            }
            return Ok(None);
        }
        for claim in &self.ignore_case {
            let mut found = false;
            for c in conditions.iter_mut().filter(|c| &c.claim == claim) {
                c.ignore_case = true;
                found = true;
            }
            if !found {
                bail!("--ignore-case {claim}: no condition on that claim");
            }
        }
        Ok(Some(conditions))
    }

    /// GITHUB_REFUSED_EVENTS minus --allow-event, with the GitHub preset or
    /// an --allow-event; otherwise nothing is sent and the server refuses
    /// the same events by default.
    fn refused_events(&self) -> anyhow::Result<Option<Vec<String>>> {
        if self.github_repo.is_none() && self.allow_events.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            GITHUB_REFUSED_EVENTS
                .iter()
                .filter(|e| !self.allow_events.iter().any(|a| a == *e))
                .map(|e| (*e).to_owned())
                .collect(),
        ))
    }

    /// The request body: the fields given (all of them for a creation).
    fn body(&self) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        let mut put = |key: &str, value: Value| {
            body.insert(key.to_owned(), value);
        };
        if let Some(issuer) = &self.issuer {
            put("issuer", json!(issuer));
        }
        if let Some(audience) = &self.audience {
            put("audience", json!(audience));
        }
        if let Some(user) = &self.service_user {
            put("service_user", json!(user));
        }
        if let Some(scope) = &self.scope {
            put("scope", json!(scope));
        }
        if let Some(lifetime) = self.lifetime {
            put("lifetime", json!(lifetime.as_secs()));
        }
        if let Some(allow) = self.allow_multiple_audiences {
            put("allow_multiple_audiences", json!(allow));
        }
        if let Some(conditions) = self.conditions()? {
            put("conditions", serde_json::to_value(conditions)?);
        }
        if let Some(events) = self.refused_events()? {
            put("refused_events", json!(events));
        }
        if let Some(force) = self.force_name_only {
            put("name_only", json!(force));
        }
        Ok(body)
    }
}

pub async fn run(
    client: &AdminClient,
    command: TrustCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    match command {
        TrustCommand::Issuer(command) => return run_issuer(client, command, json_out).await,
        TrustCommand::Create { name, policy } => {
            let mut body = policy.body()?;
            if !body.contains_key("issuer") {
                let preset = if policy.github_repo.is_some() {
                    GITHUB_ISSUER
                } else if policy.gitlab_project.is_some() {
                    GITLAB_ISSUER
                } else {
                    bail!("--issuer is required (or a preset: --github-repo, --gitlab-project)");
                };
                body.insert("issuer".into(), json!(preset));
            }
            if !body.contains_key("service_user") {
                bail!("--service-user is required");
            }
            if !body.contains_key("conditions") {
                bail!(
                    "a policy needs conditions: a preset (--github-repo, --gitlab-project) or \
                     --match/--glob/--regex"
                );
            }
            body.insert("name".into(), json!(name));
            let created: Value = client.post("/admin/v1/trust/policies", &body).await?;
            if json_out {
                return print_json(&created);
            }
            println!("created trust policy {name}");
            show_policy(&created);
        }
        TrustCommand::List => {
            let list: Value = client.get("/admin/v1/trust/policies", &[]).await?;
            if json_out {
                return print_json(&list);
            }
            show_policies(&list);
        }
        TrustCommand::Show { name } => {
            let policy: Value = client
                .get(&format!("/admin/v1/trust/policies/{}", segment(&name)), &[])
                .await?;
            if json_out {
                return print_json(&policy);
            }
            show_policy(&policy);
        }
        TrustCommand::Update { name, policy } => {
            let body = policy.body()?;
            if body.is_empty() {
                bail!("nothing to change: give the options to change");
            }
            if policy.uses_preset() && policy.issuer.is_none() {
                eprintln!("note: the policy keeps its issuer (--issuer changes it)");
            }
            let updated: Value = client
                .patch(
                    &format!("/admin/v1/trust/policies/{}", segment(&name)),
                    &body,
                )
                .await?;
            if json_out {
                return print_json(&updated);
            }
            println!("updated trust policy {name}");
            show_policy(&updated);
        }
        TrustCommand::Delete { name } => {
            client
                .delete(&format!("/admin/v1/trust/policies/{}", segment(&name)))
                .await?;
            if json_out {
                return print_json(&json!({ "deleted": name }));
            }
            println!("deleted trust policy {name}");
        }
        // Dispatched by `cli::run`, which sorts out `--token-file`.
        TrustCommand::Test(args) => return super::trust_test::run(client, args, json_out).await,
    }
    Ok(())
}

async fn run_issuer(
    client: &AdminClient,
    command: IssuerCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    match command {
        IssuerCommand::Add {
            issuer: url,
            github,
            github_enterprise,
            gitlab,
            algorithms,
            max_token_age,
            jwks_file,
        } => {
            let gitlab_preset = gitlab.is_some();
            let issuer = match (url, github, github_enterprise, gitlab) {
                (Some(url), false, None, None) => url,
                (None, true, None, None) => GITHUB_ISSUER.to_owned(),
                (None, false, Some(host), None) => {
                    github_enterprise_issuer(&host).map_err(anyhow::Error::msg)?
                }
                (None, false, None, Some(url)) => {
                    gitlab_issuer(Some(url.as_str()).filter(|u| !u.is_empty()))
                        .map_err(anyhow::Error::msg)?
                }
                _ => bail!("give one of URL, --github, --github-enterprise HOST, --gitlab [URL]"),
            };
            let max_token_age = max_token_age.or(gitlab_preset.then_some(GITLAB_MAX_TOKEN_AGE));
            let mut body = json!({ "issuer": issuer });
            if !algorithms.is_empty() {
                body["algorithms"] = json!(algorithms);
            }
            if let Some(age) = max_token_age {
                body["max_token_age"] = json!(age.as_secs());
            }
            if let Some(file) = jwks_file {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let jwks: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", file.display()))?;
                body["jwks"] = jwks;
            }
            let created: Value = client.post("/admin/v1/trust/issuers", &body).await?;
            if json_out {
                return print_json(&created);
            }
            print!("trusting ");
            show_issuer(&created);
        }
        IssuerCommand::List => {
            let list: Value = client.get("/admin/v1/trust/issuers", &[]).await?;
            if json_out {
                return print_json(&list);
            }
            show_issuers(&list);
        }
        IssuerCommand::Remove { issuer: url } => {
            client
                .delete(&format!("/admin/v1/trust/issuers/{}", segment(&url)))
                .await?;
            if json_out {
                return print_json(&json!({ "removed": url }));
            }
            println!("no longer trusting {url}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_preset_with_refused_events_and_extra_conditions() {
        let args = PolicyArgs {
            github_repo: Some("octo-org/octo-repo".into()),
            github_repo_id: Some(42),
            github_owner_id: Some(7),
            git_ref: Some("refs/heads/main".into()),
            globs: vec!["environment=prod-*".into()],
            ignore_case: vec!["environment".into()],
            ..PolicyArgs::default()
        };
        let body = args.body().unwrap();
        let conditions = body["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 5);
        assert_eq!(conditions[1]["claim"], "repository_id");
        assert_eq!(conditions[4]["match"], "glob");
        assert_eq!(conditions[4]["ignore_case"], true);
        assert_eq!(body["refused_events"], json!(["pull_request_target"]));
        let allowed = PolicyArgs {
            allow_events: vec!["pull_request_target".into()],
            ..args
        };
        assert_eq!(allowed.body().unwrap()["refused_events"], json!([]));
    }

    #[test]
    fn condition_flags_are_checked() {
        assert!(condition("match", "novalue", MatchKind::Exact).is_err());
        assert!(condition("match", "=x", MatchKind::Exact).is_err());
        let c = condition("match", "ref=a=b", MatchKind::Exact).unwrap();
        assert_eq!((c.claim.as_str(), c.value.as_str()), ("ref", "a=b"));
        let stray = PolicyArgs {
            ignore_case: vec!["x".into()],
            matches: vec!["y=1".into()],
            ..PolicyArgs::default()
        };
        assert!(stray.body().is_err());
        let bare_ref = PolicyArgs {
            git_ref: Some("main".into()),
            ..PolicyArgs::default()
        };
        assert!(bare_ref.body().is_err());
        assert!(PolicyArgs::default().body().unwrap().is_empty());
    }

    #[test]
    fn segments_keep_a_url_in_one() {
        assert_eq!(segment("https://a.b/c"), "https%3A%2F%2Fa%2Eb%2Fc");
    }
}
