//! `tessera user …`: people. A password is read from standard input
//! (`--password-stdin`, one line) or from a prompt that does not echo,
//! never from an argument, where `ps` and shell history would show it.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::AdminClient;
use super::keys::{print_json, text};
use crate::accounts::syntax::is_username;
use crate::secret::Secret;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Without --password-stdin or --no-password, the
    /// password is asked for on the terminal.
    Create {
        username: String,
        #[arg(long)]
        email: Option<String>,
        /// Mark the email address as verified.
        #[arg(long)]
        email_verified: bool,
        #[arg(long)]
        display_name: Option<String>,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "no_password")]
        password_stdin: bool,
        /// Create the user without a password (set one later with
        /// `tessera user set-password`).
        #[arg(long)]
        no_password: bool,
    },
    /// List users.
    List,
    /// Show a user (by username or id).
    Show { username: String },
    /// Change a user: the options given change.
    Update {
        username: String,
        #[arg(long, conflicts_with = "no_email")]
        email: Option<String>,
        /// Remove the email address.
        #[arg(long)]
        no_email: bool,
        #[arg(long, conflicts_with = "email_unverified")]
        email_verified: bool,
        #[arg(long)]
        email_unverified: bool,
        #[arg(long, conflicts_with = "no_display_name")]
        display_name: Option<String>,
        /// Remove the display name.
        #[arg(long)]
        no_display_name: bool,
        /// Grant the administrator role.
        #[arg(long, conflicts_with = "no_admin")]
        admin: bool,
        /// Revoke the administrator role.
        #[arg(long)]
        no_admin: bool,
    },
    /// Disable a user: no login, sessions end, tokens stop working.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Delete a user and end their sessions.
    Delete { username: String },
    /// Remove a user's second factor (TOTP and recovery codes): their next
    /// login asks for the password only, and they can enrol again.
    ResetMfa { username: String },
    /// Set a user's password (asked for on the terminal, or read from
    /// standard input with --password-stdin).
    SetPassword {
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// The API path of a user. Checked here, so that no argument can reach
/// another path (`../clients`): only a username or an id can be one.
fn user_path(username: &str) -> anyhow::Result<String> {
    if !is_username(username) {
        bail!(
            "`{}` is not a username or user id (1 to 64 characters of A-Z, a-z, 0-9, `.`, `_`, `@`, `-`)",
            username.escape_default()
        );
    }
    Ok(format!("/admin/v1/users/{username}"))
}

/// The first line of `input`, without its line ending.
fn read_password_line(input: &mut impl BufRead) -> anyhow::Result<Secret> {
    let mut line = zeroize::Zeroizing::new(String::new());
    input
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("standard input held no password (--password-stdin reads its first line)");
    }
    Ok(Secret::new(password))
}

/// Asks twice on the terminal, without echo.
fn prompt_password(username: &str) -> anyhow::Result<Secret> {
    let first = Secret::new(
        rpassword::prompt_password(format!("New password for {username}: "))
            .context("cannot read the password from the terminal")?,
    );
    let second = Secret::new(
        rpassword::prompt_password("Repeat it: ")
            .context("cannot read the password from the terminal")?,
    );
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// Where the password comes from: standard input, a prompt, or nowhere
/// (`Ok(None)` with `no_password`). `or_else` completes the error when
/// there is neither a terminal nor `--password-stdin`.
fn password(
    username: &str,
    from_stdin: bool,
    no_password: bool,
    or_else: &str,
) -> anyhow::Result<Option<Secret>> {
    if from_stdin {
        return read_password_line(&mut std::io::stdin().lock()).map(Some);
    }
    if no_password {
        return Ok(None);
    }
    if std::io::stdin().is_terminal() {
        return prompt_password(username).map(Some);
    }
    bail!(
        "no password given: standard input is not a terminal to ask on; pass \
         --password-stdin and write the password to standard input{or_else}"
    )
}

fn describe(user: &Value) -> String {
    let mut flags = Vec::new();
    if user["admin"].as_bool() == Some(true) {
        flags.push("administrator");
    }
    if user["disabled"].as_bool() == Some(true) {
        flags.push("disabled");
    }
    if user["has_password"].as_bool() != Some(true) {
        flags.push("no password");
    }
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!(" [{}]", flags.join(", "))
    };
    format!("{} ({}){flags}", text(&user["username"]), text(&user["id"]))
}

fn print_user(user: &Value) {
    let or_none = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    println!("username:       {}", text(&user["username"]));
    println!("id:             {}", text(&user["id"]));
    println!(
        "email:          {}{}",
        or_none(&user["email"]),
        if user["email"].is_string() && user["email_verified"].as_bool() == Some(true) {
            " (verified)"
        } else {
            ""
        }
    );
    println!("display name:   {}", or_none(&user["display_name"]));
    println!("administrator:  {}", user["admin"].as_bool() == Some(true));
    println!(
        "disabled:       {}",
        user["disabled"].as_bool() == Some(true)
    );
    println!(
        "has password:   {}",
        user["has_password"].as_bool() == Some(true)
    );
    for (label, key) in [
        ("created:        ", "created_at"),
        ("updated:        ", "updated_at"),
    ] {
        if let Some(at) = user[key].as_i64() {
            println!("{label}{}", crate::clock::rfc3339(at));
        }
    }
}

pub async fn run(client: &AdminClient, command: UserCommand, json_out: bool) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            username,
            email,
            email_verified,
            display_name,
            admin,
            password_stdin,
            no_password,
        } => {
            user_path(&username)?;
            let password = password(
                &username,
                password_stdin,
                no_password,
                ", or --no-password to create the user without one",
            )?;
            let mut body = json!({
                "username": username,
                "email": email,
                "email_verified": email_verified,
                "display_name": display_name,
                "admin": admin,
            });
            if let Some(password) = &password {
                body["password"] = json!(password.expose());
            }
            let user: Value = client.post("/admin/v1/users", &body).await?;
            if json_out {
                return print_json(&user);
            }
            println!("created user {}", describe(&user));
        }
        UserCommand::List => {
            let mut users = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut query = vec![("limit", "500".to_owned())];
                if let Some(cursor) = &cursor {
                    query.push(("cursor", cursor.clone()));
                }
                let page: Value = client.get("/admin/v1/users", &query).await?;
                users.extend(page["users"].as_array().cloned().unwrap_or_default());
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            if json_out {
                return print_json(&json!({ "users": users }));
            }
            println!(
                "{:<24} {:<36} {:<6} {:<8} EMAIL",
                "USERNAME", "ID", "ADMIN", "STATE"
            );
            for user in &users {
                println!(
                    "{:<24} {:<36} {:<6} {:<8} {}",
                    text(&user["username"]),
                    text(&user["id"]),
                    if user["admin"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    if user["disabled"].as_bool() == Some(true) {
                        "disabled"
                    } else {
                        "enabled"
                    },
                    user["email"].as_str().unwrap_or("-"),
                );
            }
        }
        UserCommand::Show { username } => {
            let user: Value = client.get(&user_path(&username)?, &[]).await?;
            if json_out {
                return print_json(&user);
            }
            print_user(&user);
        }
        UserCommand::Update {
            username,
            email,
            no_email,
            email_verified,
            email_unverified,
            display_name,
            no_display_name,
            admin,
            no_admin,
        } => {
            let path = user_path(&username)?;
            let mut body = Map::new();
            if let Some(email) = email {
                body.insert("email".into(), json!(email));
            } else if no_email {
                body.insert("email".into(), Value::Null);
            }
            if email_verified || email_unverified {
                body.insert("email_verified".into(), json!(email_verified));
            }
            if let Some(name) = display_name {
                body.insert("display_name".into(), json!(name));
            } else if no_display_name {
                body.insert("display_name".into(), Value::Null);
            }
            if admin || no_admin {
                body.insert("admin".into(), json!(admin));
            }
            if body.is_empty() {
                bail!("nothing to change: give the options to change");
            }
            let user: Value = client.patch(&path, &body).await?;
            if json_out {
                return print_json(&user);
            }
            println!("updated user {}", describe(&user));
        }
        UserCommand::Disable { username } => {
            let user: Value = client
                .post(&format!("{}/disable", user_path(&username)?), &json!({}))
                .await?;
            if json_out {
                return print_json(&user);
            }
            println!("disabled user {}", describe(&user));
        }
        UserCommand::Enable { username } => {
            let user: Value = client
                .post(&format!("{}/enable", user_path(&username)?), &json!({}))
                .await?;
            if json_out {
                return print_json(&user);
            }
            println!("enabled user {}", describe(&user));
        }
        UserCommand::ResetMfa { username } => {
            client
                .delete(&format!("{}/mfa", user_path(&username)?))
                .await?;
            if json_out {
                return print_json(&json!({ "mfa_reset": username }));
            }
            println!("removed the second factor of user {username}");
        }
        UserCommand::Delete { username } => {
            client.delete(&user_path(&username)?).await?;
            if json_out {
                return print_json(&json!({ "deleted": username }));
            }
            println!("deleted user {username}");
        }
        UserCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let path = format!("{}/password", user_path(&username)?);
            let Some(password) = password(&username, password_stdin, false, "")? else {
                bail!("no password given");
            };
            let _: Value = client
                .put(&path, &json!({ "password": password.expose() }))
                .await?;
            if json_out {
                return print_json(&json!({ "password_set": username }));
            }
            println!("set the password of {username}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_line_loses_only_its_line_ending() {
        let read = |input: &str| read_password_line(&mut input.as_bytes());
        assert_eq!(read("s3cret pass\n").unwrap().expose(), "s3cret pass");
        assert_eq!(read("s3cret pass\r\n").unwrap().expose(), "s3cret pass");
        assert_eq!(
            read(" padded \nsecond line\n").unwrap().expose(),
            " padded "
        );
        assert_eq!(read("no newline").unwrap().expose(), "no newline");
        assert!(read("").is_err());
        assert!(read("\n").is_err());
    }

    #[test]
    fn only_usernames_reach_the_path() {
        assert_eq!(user_path("Alice").unwrap(), "/admin/v1/users/Alice");
        for bad in ["../clients", "a/b", "", "a?b", "a%2e"] {
            assert!(user_path(bad).is_err(), "{bad}");
        }
    }
}
