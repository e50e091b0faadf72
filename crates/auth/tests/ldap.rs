//! LDAP login against a real OpenLDAP server (Debian's `slapd` and
//! `ldap-utils`), one per test, configured from a temporary directory with its
//! own CA for LDAPS and StartTLS.

use berth_auth::directory::ExternalDirectory;
use berth_auth::ldap::{GroupRole, LdapConfig, LdapDirectory};
use berth_auth::{Directory, Principal, Role};
use berth_core::MemoryKv;
use berth_test_kit::pki::Pki;
use berth_test_kit::slapd::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn directory(config: LdapConfig) -> LdapDirectory {
    LdapDirectory::new(config).unwrap()
}

async fn login(
    d: &LdapDirectory,
    user: &str,
    password: &str,
) -> Option<(String, String, Vec<String>)> {
    d.authenticate(user, password)
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"))
        .map(|i| (i.name, i.email, i.groups))
}

/// The error of a login under `config` that cannot be decided.
async fn login_error(config: LdapConfig, user: &str, password: &str) -> String {
    directory(config)
        .authenticate(user, password)
        .await
        .unwrap_err()
}

/// A login's answer: the name, e-mail and groups of the identity found.
fn found(name: &str, email: &str, groups_of: &[&str]) -> Option<(String, String, Vec<String>)> {
    Some((name.into(), email.into(), groups(groups_of)))
}

fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn password_login_reads_email_and_groups() {
    let slapd = Slapd::start().await;
    let d = directory(slapd.config());
    assert_eq!(
        login(&d, "alice", "alice-secret").await,
        found("alice", "alice@example.org", &["admins", "developers"])
    );
    // The directory matches uid without case; the name is its spelling.
    assert_eq!(
        login(&d, "ALICE", "alice-secret").await.map(|i| i.0),
        Some("alice".into())
    );
    // A DN with parentheses and a comma, escaped in the group filter.
    assert_eq!(
        login(&d, "dave", "dave-secret").await,
        found("dave", "dave@example.org", &["developers", "ops"])
    );
    // No mail, no groups.
    assert_eq!(login(&d, "bob", "bob-secret").await, found("bob", "", &[]));
    // Without group_base_dn, groups are searched under base_dn.
    let mut c = slapd.config();
    c.base_dn = BASE.into();
    c.group_base_dn = None;
    assert_eq!(
        login(&directory(c), "dave", "dave-secret")
            .await
            .map(|i| i.2),
        Some(groups(&["developers", "ops"]))
    );
}

#[tokio::test]
async fn wrong_password_unknown_user_and_empty_password_are_none() {
    let slapd = Slapd::start().await;
    let d = directory(slapd.config());
    assert_eq!(login(&d, "alice", "bob-secret").await, None);
    assert_eq!(login(&d, "alice", "alice-secret ").await, None);
    assert_eq!(login(&d, "nobody", "alice-secret").await, None);
    assert_eq!(login(&d, "", "alice-secret").await, None);

    // This server accepts a bind with a DN and no password (as anonymous),
    // so only the client's own check keeps the empty password out.
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&format!("ldap://127.0.0.1:{}", slapd.port))
        .await
        .unwrap();
    ldap3::drive!(conn);
    let res = ldap.simple_bind(ALICE_DN, "").await.unwrap();
    assert_eq!(res.rc, 0, "the server should accept unauthenticated binds");
    let _ = ldap.unbind().await;
    assert_eq!(login(&d, "alice", "").await, None);

    // Several entries with one uid: nobody knows which one is meant.
    assert_eq!(login(&d, "twin", "twin-secret").await, None);
}

#[tokio::test]
async fn login_names_cannot_change_the_filter() {
    let slapd = Slapd::start().await;
    let d = directory(slapd.config());
    for user in [
        "*",
        "al*",
        "*lice",
        ")(uid=*",
        "alice)(uid=*",
        "alice)(objectClass=*",
        "*)(|(uid=*",
        "alice\\",
        "alice\0",
    ] {
        assert_eq!(login(&d, user, "alice-secret").await, None, "{user:?}");
    }
    // A control: the same password with the real name works.
    assert!(login(&d, "alice", "alice-secret").await.is_some());
}

#[tokio::test]
async fn user_filter_limits_who_may_log_in() {
    let slapd = Slapd::start().await;
    let mut c = slapd.config();
    c.user_filter = "mail=*".into();
    let d = directory(c);
    assert_eq!(login(&d, "bob", "bob-secret").await, None);
    assert!(login(&d, "alice", "alice-secret").await.is_some());
}

#[tokio::test]
async fn ldaps_trusts_ca_file_only() {
    let slapd = Slapd::start().await;
    let d = directory(slapd.ldaps_config(Some(&slapd.pki.ca)));
    assert_eq!(
        login(&d, "alice", "alice-secret").await.map(|i| i.2),
        Some(groups(&["admins", "developers"]))
    );
    assert_eq!(login(&d, "alice", "wrong").await, None);
    // An unknown CA is an error, never a failed login.
    for c in [
        slapd.ldaps_config(Some(&slapd.pki.other_ca)),
        slapd.ldaps_config(None),
    ] {
        let e = login_error(c, "alice", "alice-secret").await;
        assert!(e.contains("connect"), "{e}");
    }
}

#[tokio::test]
async fn start_tls_trusts_ca_file_only() {
    let slapd = Slapd::start().await;
    let d = directory(slapd.start_tls_config(&slapd.pki.ca));
    assert_eq!(
        login(&d, "dave", "dave-secret").await.map(|i| i.1),
        Some("dave@example.org".into())
    );
    assert_eq!(login(&d, "dave", "alice-secret").await, None);
    let e = login_error(
        slapd.start_tls_config(&slapd.pki.other_ca),
        "dave",
        "dave-secret",
    )
    .await;
    assert!(e.contains("connect"), "{e}");
}

#[tokio::test]
async fn misconfiguration_is_an_error_not_a_failed_login() {
    let slapd = Slapd::start().await;
    let mut c = slapd.config();
    c.bind_password = "not-the-password".into();
    let e = login_error(c, "alice", "alice-secret").await;
    assert!(e.contains("service account"), "{e}");

    let mut c = slapd.config();
    c.base_dn = format!("ou=nowhere,{BASE}");
    let e = login_error(c, "alice", "alice-secret").await;
    assert!(e.contains("does not exist"), "{e}");

    // The service account's password from a file.
    let pw = slapd.path("bind-password");
    std::fs::write(&pw, format!("{READER_PW}\n")).unwrap();
    let mut c = slapd.config();
    c.bind_password = String::new();
    c.bind_password_file = Some(pw);
    assert!(login(&directory(c), "alice", "alice-secret")
        .await
        .is_some());
}

#[tokio::test]
async fn unreachable_server_is_an_error_within_the_timeout() {
    // Nothing listens on port 1: refused at once.
    let refused: LdapConfig = toml::from_str(&format!(
        "url = \"ldap://127.0.0.1:1\"\nbase_dn = \"{BASE}\"\ntimeout_secs = 1"
    ))
    .unwrap();
    let started = Instant::now();
    assert!(directory(refused)
        .authenticate("alice", "pw")
        .await
        .is_err());
    assert!(started.elapsed() < Duration::from_secs(2));

    // Accepted by the kernel, never answered: every step must give up.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    for (url, start_tls) in [
        (format!("ldap://127.0.0.1:{port}"), false),
        (format!("ldap://127.0.0.1:{port}"), true),
        (format!("ldaps://127.0.0.1:{port}"), false),
    ] {
        let mut c: LdapConfig = toml::from_str(&format!(
            "url = \"{url}\"\nbase_dn = \"{BASE}\"\ntimeout_secs = 1"
        ))
        .unwrap();
        c.start_tls = start_tls;
        if url.starts_with("ldaps") || start_tls {
            c.ca_file = Some(pki.ca.clone());
        }
        let started = Instant::now();
        let e = login_error(c, "alice", "pw").await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{url} start_tls={start_tls}: {took:?}: {e}"
        );
    }
}

#[tokio::test]
async fn directory_remembers_ldap_users_and_maps_groups_to_roles() {
    let slapd = Slapd::start().await;
    let mut c = slapd.config();
    c.group_roles = vec![
        GroupRole {
            group: "developers".into(),
            project: "team".into(),
            role: Role::Developer,
        },
        GroupRole {
            group: "admins".into(),
            project: "team".into(),
            role: Role::Maintainer,
        },
        GroupRole {
            group: "ops".into(),
            project: "infra".into(),
            role: Role::ProjectAdmin,
        },
    ];
    let grants = c.group_role_grants();
    let dir =
        Directory::new(Arc::new(MemoryKv::new())).with_external(Arc::new(directory(c)), grants);

    assert!(dir.user("alice").await.unwrap().is_none());
    assert!(dir.authenticate("alice", "wrong").await.unwrap().is_none());
    assert!(
        dir.user("alice").await.unwrap().is_none(),
        "no record for a failed login"
    );

    let alice = dir
        .authenticate("alice", "alice-secret")
        .await
        .unwrap()
        .unwrap();
    let Principal::User {
        name,
        admin,
        groups: g,
    } = &alice
    else {
        panic!("{alice:?}");
    };
    assert_eq!(name, "alice");
    assert!(!admin);
    assert_eq!(g, &groups(&["admins", "developers"]));
    let record = dir.user("alice").await.unwrap().unwrap();
    assert_eq!(record.source, "ldap");
    assert_eq!(record.email, "alice@example.org");
    assert!(record.password_hash.is_empty());
    // Best of developer and maintainer.
    assert_eq!(
        dir.role_of(&alice, "team").await.unwrap(),
        Some(Role::Maintainer)
    );
    assert_eq!(dir.role_of(&alice, "infra").await.unwrap(), None);

    let dave = dir
        .authenticate("dave", "dave-secret")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dir.role_of(&dave, "infra").await.unwrap(),
        Some(Role::ProjectAdmin)
    );
    assert_eq!(
        dir.role_of(&dave, "team").await.unwrap(),
        Some(Role::Developer)
    );

    // Later logins still ask the directory.
    assert!(dir.authenticate("alice", "wrong").await.unwrap().is_none());
    assert!(dir
        .authenticate("alice", "alice-secret")
        .await
        .unwrap()
        .is_some());
    assert_eq!(dir.users().await.unwrap().len(), 2);
}
