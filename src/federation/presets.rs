//! Presets (issue 9 items 1 and 2): the issuer URLs of the CI platforms,
//! and the conditions that `--github-repo …` and `--gitlab-project …`
//! expand into. They expand into ordinary, visible [`Condition`]s, so a
//! stored policy says exactly what it checks and nothing is implied.
//!
//! Claim names follow the platforms' documentation: GitHub's "About
//! security hardening with OpenID Connect" (`repository`, `repository_id`,
//! `repository_owner_id`, `ref`, `environment`, `workflow_ref`,
//! `job_workflow_ref`, `event_name`) and GitLab's "ID token
//! authentication" (`project_path`, `project_id`, `ref`, `ref_protected`).

use url::Url;

use super::issuers::is_acceptable_url;
use super::model::{Condition, ID_CLAIMS, MatchKind};

/// GitHub Actions' issuer (github.com).
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// GitLab.com's issuer; self-managed instances use their own URL.
pub const GITLAB_ISSUER: &str = "https://gitlab.com";

/// `event_name` values the GitHub preset refuses. A `pull_request_target`
/// run carries the base repository's claims and `ref` while running code a
/// fork can influence (the "pwn request"); a policy opts back in with
/// `--allow-event pull_request_target`.
pub const GITHUB_REFUSED_EVENTS: &[&str] = &["pull_request_target"];

/// The longest value a preset writes into a condition (the conditions'
/// own cap, see [`super::conditions`]).
const MAX_VALUE_LEN: usize = 1024;

/// GitHub Enterprise Server's issuer, `https://HOST/_services/token`.
/// `host` is a plain `hostname[:port]`: no scheme, path or credentials.
pub fn github_enterprise_issuer(host: &str) -> Result<String, String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n != 0)
    });
    if !(name_ok && port_ok) {
        return Err(format!(
            "{:?} is not a plain host name (HOST or HOST:PORT, without scheme or path)",
            super::conditions::bounded(host)
        ));
    }
    // Written as GitHub writes its `iss`: lower case, no default port.
    // A host the URL parser would rewrite (`1.2.3` is read as the IPv4
    // address 1.2.0.3) is refused rather than silently changed.
    let url = Url::parse(&format!("https://{host}/_services/token"))
        .map_err(|e| format!("{:?}: {e}", super::conditions::bounded(host)))?;
    if url.host_str() != Some(name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{:?} is not a plain host name",
            super::conditions::bounded(host)
        ));
    }
    let issuer = url.to_string();
    if !is_acceptable_url(&issuer) {
        return Err("the GitHub Enterprise issuer URL would be too long".into());
    }
    Ok(issuer)
}

/// A GitLab issuer: GitLab.com by default, or a self-managed instance's
/// URL. Issuers are compared byte for byte, so the URL is written as
/// GitLab writes its `iss` (its `external_url`): host in lower case, no
/// default port, no trailing `/`. It must be `https`, or `http` on
/// loopback.
pub fn gitlab_issuer(url: Option<&str>) -> Result<String, String> {
    let text = url.unwrap_or(GITLAB_ISSUER);
    let refused = || {
        format!(
            "{:?} is not an acceptable GitLab URL (absolute https, or http on loopback only; \
             no credentials, query or fragment)",
            super::conditions::bounded(text)
        )
    };
    if !is_acceptable_url(text) {
        return Err(refused());
    }
    let normalized = Url::parse(text).map_err(|_| refused())?.to_string();
    let issuer = normalized.trim_end_matches('/');
    if !is_acceptable_url(issuer) {
        return Err(refused());
    }
    Ok(issuer.to_owned())
}

/// `--github-repo ORG/REPO --github-repo-id N --github-owner-id N …`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitHubRepo {
    /// `ORG/REPO`.
    pub repository: String,
    pub repository_id: u64,
    pub owner_id: u64,
    /// The full ref, e.g. `refs/heads/main` (GitHub's `ref` claim).
    pub git_ref: Option<String>,
    pub environment: Option<String>,
    /// The calling workflow, `ORG/REPO/.github/workflows/F.yml@REF`
    /// (matched against `workflow_ref`).
    pub workflow: Option<String>,
    /// The reusable workflow that runs the job (matched against
    /// `job_workflow_ref`).
    pub job_workflow: Option<String>,
}

/// `--gitlab-project GROUP/PROJECT --gitlab-project-id N …`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitLabProject {
    /// `GROUP/…/PROJECT`.
    pub project: String,
    pub project_id: u64,
    /// A branch or tag name, e.g. `main` (GitLab's `ref` claim is short).
    pub git_ref: Option<String>,
    pub protected_ref: bool,
}

/// The conditions of the GitHub preset: the repository by name and by
/// both ids (so a deleted and re-created, or transferred, repository of
/// the same name does not match), then each optional field given.
/// `workflow_ref` is the caller's workflow; `job_workflow_ref` the reusable
/// workflow actually running the job: they differ exactly when a reusable
/// workflow is called, and trusting the wrong one trusts the wrong code.
pub fn github_conditions(p: &GitHubRepo) -> Result<Vec<Condition>, String> {
    check_path("--github-repo", &p.repository, 2, Some(2))?;
    check_id("--github-repo-id", p.repository_id)?;
    check_id("--github-owner-id", p.owner_id)?;
    let mut conditions = vec![
        exact("repository", &p.repository),
        exact("repository_id", &p.repository_id.to_string()),
        exact("repository_owner_id", &p.owner_id.to_string()),
    ];
    if let Some(git_ref) = &p.git_ref {
        check_value("--ref", git_ref)?;
        if !git_ref.starts_with("refs/") {
            return Err(format!(
                "--ref: GitHub's ref claim is a full ref such as refs/heads/main or refs/tags/v1, \
                 not {:?}",
                super::conditions::bounded(git_ref)
            ));
        }
        conditions.push(exact("ref", git_ref));
    }
    if let Some(environment) = &p.environment {
        check_value("--environment", environment)?;
        conditions.push(exact("environment", environment));
    }
    if let Some(workflow) = &p.workflow {
        check_workflow("--workflow", workflow)?;
        conditions.push(exact("workflow_ref", workflow));
    }
    if let Some(job_workflow) = &p.job_workflow {
        check_workflow("--job-workflow", job_workflow)?;
        conditions.push(exact("job_workflow_ref", job_workflow));
    }
    Ok(conditions)
}

/// The conditions of the GitLab preset: the project by path and by id,
/// then the ref, and `ref_protected` = `true` when only protected branches
/// and tags may use the trust (GitLab sends it as the string `"true"`;
/// conditions compare booleans as strings either way).
pub fn gitlab_conditions(p: &GitLabProject) -> Result<Vec<Condition>, String> {
    check_path("--gitlab-project", &p.project, 2, None)?;
    check_id("--gitlab-project-id", p.project_id)?;
    let mut conditions = vec![
        exact("project_path", &p.project),
        exact("project_id", &p.project_id.to_string()),
    ];
    if let Some(git_ref) = &p.git_ref {
        check_value("--ref", git_ref)?;
        if git_ref.starts_with("refs/") {
            return Err(format!(
                "--ref: GitLab's ref claim is a short branch or tag name such as main, not {:?}",
                super::conditions::bounded(git_ref)
            ));
        }
        conditions.push(exact("ref", git_ref));
    }
    if p.protected_ref {
        conditions.push(exact("ref_protected", "true"));
    }
    Ok(conditions)
}

/// Whether the conditions pin a repository or project by number: an exact
/// match on one of [`ID_CLAIMS`] with an all-digit value. A policy without
/// one matches on names alone and is refused unless forced, because a
/// name can be re-registered by someone else after a rename or deletion.
pub fn pins_an_id(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| {
        c.kind == MatchKind::Exact
            && ID_CLAIMS.contains(&c.claim.as_str())
            && !c.value.is_empty()
            && c.value.bytes().all(|b| b.is_ascii_digit())
    })
}

fn exact(claim: &str, value: &str) -> Condition {
    Condition {
        claim: claim.to_owned(),
        kind: MatchKind::Exact,
        value: value.to_owned(),
        ignore_case: false,
    }
}

fn check_id(flag: &str, id: u64) -> Result<(), String> {
    if id == 0 {
        return Err(format!("{flag}: ids start at 1"));
    }
    Ok(())
}

fn check_value(flag: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{flag}: empty"));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("{flag}: longer than {MAX_VALUE_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{flag}: control characters are not allowed"));
    }
    Ok(())
}

/// `ORG/REPO/.github/workflows/F.yml@REF`: a path with an `@`.
fn check_workflow(flag: &str, value: &str) -> Result<(), String> {
    check_value(flag, value)?;
    let Some((path, git_ref)) = value.rsplit_once('@') else {
        return Err(format!(
            "{flag}: expected ORG/REPO/.github/workflows/FILE@REF, got {:?}",
            super::conditions::bounded(value)
        ));
    };
    if git_ref.is_empty() || path.split('/').count() < 3 || path.split('/').any(str::is_empty) {
        return Err(format!(
            "{flag}: expected ORG/REPO/.github/workflows/FILE@REF, got {:?}",
            super::conditions::bounded(value)
        ));
    }
    Ok(())
}

/// A repository (`ORG/REPO`) or project path (`GROUP/…/PROJECT`):
/// `min..=max` segments of letters, digits, `.`, `-` and `_`, none empty,
/// `.` or `..`.
fn check_path(flag: &str, path: &str, min: usize, max: Option<usize>) -> Result<(), String> {
    check_value(flag, path)?;
    let segments = path.split('/').count();
    let segments_ok = path.split('/').all(|s| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    });
    let expected = match max {
        Some(2) => "ORG/REPO",
        _ => "GROUP/PROJECT or GROUP/SUBGROUP/…/PROJECT",
    };
    if !segments_ok || segments < min || max.is_some_and(|max| segments > max) {
        return Err(format!(
            "{flag}: expected {expected}, got {:?}",
            super::conditions::bounded(path)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> GitHubRepo {
        GitHubRepo {
            repository: "octo-org/octo-repo".into(),
            repository_id: 42,
            owner_id: 7,
            ..GitHubRepo::default()
        }
    }

    fn pairs(conditions: &[Condition]) -> Vec<(&str, &str)> {
        assert!(
            conditions
                .iter()
                .all(|c| c.kind == MatchKind::Exact && !c.ignore_case)
        );
        conditions
            .iter()
            .map(|c| (c.claim.as_str(), c.value.as_str()))
            .collect()
    }

    #[test]
    fn issuers() {
        assert_eq!(
            github_enterprise_issuer("ghe.example.com").unwrap(),
            "https://ghe.example.com/_services/token"
        );
        assert_eq!(
            github_enterprise_issuer("GHE.example.com:8443").unwrap(),
            "https://ghe.example.com:8443/_services/token"
        );
        assert_eq!(
            github_enterprise_issuer("ghe.example.com:443").unwrap(),
            "https://ghe.example.com/_services/token"
        );
        assert_eq!(
            github_enterprise_issuer("10.0.0.5").unwrap(),
            "https://10.0.0.5/_services/token"
        );
        for bad in [
            "",
            "https://ghe.example.com",
            "ghe.example.com/path",
            "ghe.example.com:",
            "ghe.example.com:99999",
            "ghe.example.com:0",
            "user@ghe.example.com",
            "ghe..example.com",
            "-ghe.example.com",
            "ghe example.com",
            "ghe.example.com?x",
            "1.2.3",
            "0x7f.1",
        ] {
            assert!(github_enterprise_issuer(bad).is_err(), "{bad}");
        }
        assert_eq!(gitlab_issuer(None).unwrap(), GITLAB_ISSUER);
        assert_eq!(
            gitlab_issuer(Some("https://gitlab.example.com/")).unwrap(),
            "https://gitlab.example.com"
        );
        assert_eq!(
            gitlab_issuer(Some("http://127.0.0.1:8080")).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            gitlab_issuer(Some("https://GitLab.Example.com:443/gitlab/")).unwrap(),
            "https://gitlab.example.com/gitlab"
        );
        for bad in [
            "http://gitlab.example.com",
            "gitlab.example.com",
            "https://",
            "https://gitlab.example.com/?x=1",
            "",
        ] {
            assert!(gitlab_issuer(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn github_preset_expands_to_visible_exact_conditions() {
        let minimal = github_conditions(&repo()).unwrap();
        assert_eq!(
            pairs(&minimal),
            [
                ("repository", "octo-org/octo-repo"),
                ("repository_id", "42"),
                ("repository_owner_id", "7"),
            ]
        );
        assert!(pins_an_id(&minimal));
        let full = github_conditions(&GitHubRepo {
            git_ref: Some("refs/heads/main".into()),
            environment: Some("prod".into()),
            workflow: Some(
                "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main".into(),
            ),
            job_workflow: Some("octo-org/shared/.github/workflows/release.yml@refs/tags/v1".into()),
            ..repo()
        })
        .unwrap();
        assert_eq!(
            pairs(&full)[3..],
            [
                ("ref", "refs/heads/main"),
                ("environment", "prod"),
                (
                    "workflow_ref",
                    "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main"
                ),
                (
                    "job_workflow_ref",
                    "octo-org/shared/.github/workflows/release.yml@refs/tags/v1"
                ),
            ]
        );
    }

    #[test]
    fn github_preset_refuses_bad_input() {
        for repository in ["octo-org", "a/b/c", "/b", "a/", "a b/c", "./x", "a/..", ""] {
            let p = GitHubRepo {
                repository: repository.into(),
                ..repo()
            };
            assert!(github_conditions(&p).is_err(), "{repository}");
        }
        assert!(
            github_conditions(&GitHubRepo {
                repository_id: 0,
                ..repo()
            })
            .is_err()
        );
        assert!(
            github_conditions(&GitHubRepo {
                owner_id: 0,
                ..repo()
            })
            .is_err()
        );
        assert!(
            github_conditions(&GitHubRepo {
                git_ref: Some("main".into()),
                ..repo()
            })
            .is_err()
        );
        assert!(
            github_conditions(&GitHubRepo {
                environment: Some("prod\n".into()),
                ..repo()
            })
            .is_err()
        );
        for workflow in [
            "deploy.yml",
            "o/r/.github/workflows/deploy.yml@",
            "o/r@main",
        ] {
            let p = GitHubRepo {
                workflow: Some(workflow.into()),
                ..repo()
            };
            assert!(github_conditions(&p).is_err(), "{workflow}");
        }
        assert_eq!(GITHUB_REFUSED_EVENTS, ["pull_request_target"]);
    }

    #[test]
    fn gitlab_preset() {
        let p = GitLabProject {
            project: "group/sub/project".into(),
            project_id: 99,
            git_ref: Some("main".into()),
            protected_ref: true,
        };
        let conditions = gitlab_conditions(&p).unwrap();
        assert_eq!(
            pairs(&conditions),
            [
                ("project_path", "group/sub/project"),
                ("project_id", "99"),
                ("ref", "main"),
                ("ref_protected", "true"),
            ]
        );
        assert!(pins_an_id(&conditions));
        let minimal = gitlab_conditions(&GitLabProject {
            git_ref: None,
            protected_ref: false,
            ..p.clone()
        })
        .unwrap();
        assert_eq!(minimal.len(), 2);
        for project in ["group", "group//p", "group/p/", ""] {
            let q = GitLabProject {
                project: project.into(),
                ..p.clone()
            };
            assert!(gitlab_conditions(&q).is_err(), "{project}");
        }
        assert!(
            gitlab_conditions(&GitLabProject {
                project_id: 0,
                ..p.clone()
            })
            .is_err()
        );
        assert!(
            gitlab_conditions(&GitLabProject {
                git_ref: Some("refs/heads/main".into()),
                ..p
            })
            .is_err()
        );
    }

    #[test]
    fn name_only_policies_are_recognised() {
        let c = |claim: &str, kind, value: &str| Condition {
            claim: claim.into(),
            kind,
            value: value.into(),
            ignore_case: false,
        };
        assert!(pins_an_id(&[c("repository_id", MatchKind::Exact, "42")]));
        assert!(pins_an_id(&[
            c("repository", MatchKind::Exact, "o/r"),
            c("namespace_id", MatchKind::Exact, "3"),
        ]));
        assert!(!pins_an_id(&[c("repository", MatchKind::Exact, "o/r")]));
        assert!(!pins_an_id(&[c("repository_id", MatchKind::Glob, "4*")]));
        assert!(!pins_an_id(&[c("repository_id", MatchKind::Regex, "42")]));
        assert!(!pins_an_id(&[c("repository_id", MatchKind::Exact, "")]));
        assert!(!pins_an_id(&[c("repository_id", MatchKind::Exact, "4a")]));
        assert!(!pins_an_id(&[c("run_id", MatchKind::Exact, "42")]));
        assert!(!pins_an_id(&[]));
    }
}
