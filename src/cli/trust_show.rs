//! How `tessera trust …` prints issuers and policies for a person: every
//! condition expanded, every server-sent value escaped (a value holding
//! terminal control sequences prints as text, never as commands).

use std::time::Duration;

use serde_json::Value;

/// A server-sent string, quoted and escaped.
fn quoted(value: &Value) -> String {
    format!("{:?}", value.as_str().unwrap_or(""))
}

/// A server-sent word (an id, a URL): escaped, unquoted.
fn plain(value: &Value) -> String {
    match value.as_str() {
        Some(text) => text.chars().flat_map(char::escape_debug).collect(),
        None => "-".into(),
    }
}

fn words(value: &Value) -> String {
    let list: Vec<String> = value.as_array().into_iter().flatten().map(plain).collect();
    if list.is_empty() {
        "(none)".into()
    } else {
        list.join(" ")
    }
}

fn seconds(value: &Value) -> String {
    value.as_u64().map_or("-".into(), |s| {
        humantime::format_duration(Duration::from_secs(s)).to_string()
    })
}

/// `repository_id = "42"`, `ref ~ glob "refs/heads/*" (ignore case)`.
pub fn condition(c: &Value) -> String {
    let operator = match c["match"].as_str() {
        Some("glob") => "~ glob",
        Some("regex") => "~ regex",
        _ => "=",
    };
    let case = if c["ignore_case"].as_bool() == Some(true) {
        " (ignore case)"
    } else {
        ""
    };
    format!(
        "{} {operator} {}{case}",
        plain(&c["claim"]),
        quoted(&c["value"])
    )
}

pub fn show_policy(p: &Value) {
    println!("policy        {}", plain(&p["name"]));
    println!("issuer        {}", plain(&p["issuer"]));
    println!("audience      {}", plain(&p["audience"]));
    if p["allow_multiple_audiences"].as_bool() == Some(true) {
        println!("              (tokens with several audiences accepted)");
    }
    println!("service user  {}", plain(&p["service_user"]));
    println!("scopes        {}", words(&p["scopes"]));
    println!("lifetime      {}", seconds(&p["lifetime"]));
    println!("refused events {}", words(&p["refused_events"]));
    println!("conditions (all must hold):");
    for c in p["conditions"].as_array().into_iter().flatten() {
        println!("  {}", condition(c));
    }
    if p["name_only"].as_bool() == Some(true) {
        println!("warning: matches on names alone (saved with --force-name-only)");
    }
}

pub fn show_policies(list: &Value) {
    println!(
        "{:<24} {:<26} {:<46} SCOPES",
        "NAME", "SERVICE USER", "ISSUER"
    );
    for p in list["policies"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<26} {:<46} {}",
            plain(&p["name"]),
            plain(&p["service_user"]),
            plain(&p["issuer"]),
            words(&p["scopes"])
        );
    }
}

pub fn show_issuer(i: &Value) {
    let keys = if i["jwks"].is_object() {
        "static JWKS"
    } else {
        "keys from discovery"
    };
    println!(
        "{} ({}; tokens living at most {}; {keys})",
        plain(&i["issuer"]),
        words(&i["algorithms"]),
        seconds(&i["max_token_age"])
    );
}

pub fn show_issuers(list: &Value) {
    for i in list["issuers"].as_array().into_iter().flatten() {
        show_issuer(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_print_escaped() {
        let c = json!({"claim": "ref", "match": "glob", "value": "refs/heads/*\u{1b}[2J", "ignore_case": true});
        assert_eq!(
            condition(&c),
            "ref ~ glob \"refs/heads/*\\u{1b}[2J\" (ignore case)"
        );
        let c = json!({"claim": "repository_id", "match": "exact", "value": "42"});
        assert_eq!(condition(&c), "repository_id = \"42\"");
    }
}
