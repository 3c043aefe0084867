//! `state.database` as a PostgreSQL URL, and `state.lease_ttl`.

use super::*;

#[test]
fn a_postgres_url_is_a_secret_not_a_path() {
    let url = "postgres://mirror:s3cr3t@db.internal:5432/ocimirror";
    // From the file, and from the environment (how a password is passed).
    for (text, env) in [
        (
            format!("version = 1\n[state]\ndatabase = \"{url}\"\n{MINIMAL_JOB}"),
            vec![],
        ),
        (
            format!("version = 1\n{MINIMAL_JOB}"),
            vec![("OCIMIRROR_STATE__DATABASE", url)],
        ),
    ] {
        let (_dir, res) = load_text("c.toml", &text, &env);
        let config = res.unwrap();
        assert_eq!(
            config.state.postgres.as_ref().map(|s| s.expose()),
            Some(url)
        );
        // Printed configs never show it.
        let printed = serde_json::to_string(&config.state).unwrap();
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert_eq!(config.state.lease_ttl, Duration::from_secs(30));
    }
    let (_dir, res) = load_text("c.toml", &format!("version = 1\n{MINIMAL_JOB}"), &[]);
    assert_eq!(res.unwrap().state.postgres, None);
}

#[test]
fn lease_ttl_is_a_positive_duration() {
    let (_dir, res) = load_text(
        "c.toml",
        &format!("version = 1\n[state]\nlease_ttl = \"5s\"\n{MINIMAL_JOB}"),
        &[],
    );
    assert_eq!(res.unwrap().state.lease_ttl, Duration::from_secs(5));
    assert_one(
        &format!("version = 1\n[state]\nlease_ttl = \"0s\"\n{MINIMAL_JOB}"),
        "state.lease_ttl",
        "more than 0s",
    );
}
