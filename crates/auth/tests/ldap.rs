//! LDAP login against a real OpenLDAP server (Debian's `slapd` and
//! `ldap-utils`), one per test, configured from a temporary directory with its
//! own CA for LDAPS and StartTLS.

use berth_auth::directory::ExternalDirectory;
use berth_auth::ldap::{GroupRole, LdapConfig, LdapDirectory};
use berth_auth::{Directory, Principal, Role};
use berth_core::MemoryKv;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BASE: &str = "dc=example,dc=org";
const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PW: &str = "root-secret";
const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=org";
const READER_PW: &str = "reader-secret";
const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";

const SLAPD_CONF: &str = r#"
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile @DIR@/slapd.pid
argsfile @DIR@/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
# A DN with an empty password then binds as anonymous with success, as some
# servers do: the client must refuse empty passwords itself.
allow bind_anon_dn
TLSCACertificateFile @DIR@/ca.pem
TLSCertificateFile @DIR@/server.pem
TLSCertificateKeyFile @DIR@/server.key
database mdb
maxsize 10485760
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw root-secret
directory @DIR@/db
access to attrs=userPassword by anonymous auth by * none
# Only the service account may read groups, as in hardened directories.
access to dn.subtree="ou=groups,dc=example,dc=org"
  by dn.exact="cn=reader,ou=services,dc=example,dc=org" read
  by * none
access to * by users read by * none
"#;

const DATA: &str = r#"dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=org
objectClass: organizationalUnit
ou: services

dn: cn=reader,ou=services,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: reader-secret

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: Liddell
mail: alice@example.org
userPassword: alice-secret

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Builder
userPassword: bob-secret

dn: cn=Dave (ops)\2C Jr,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: dave
cn: Dave (ops), Jr
sn: Jr
mail: dave@example.org
userPassword: dave-secret

dn: cn=Twin One,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: twin
cn: Twin One
sn: One
userPassword: twin-secret

dn: cn=Twin Two,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: twin
cn: Twin Two
sn: Two
userPassword: twin-secret

dn: cn=developers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: developers
member: uid=alice,ou=people,dc=example,dc=org
member: cn=Dave (ops)\2C Jr,ou=people,dc=example,dc=org

dn: cn=admins,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: admins
member: uid=alice,ou=people,dc=example,dc=org

dn: cn=ops,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: ops
member: cn=Dave (ops)\2C Jr,ou=people,dc=example,dc=org
"#;

/// A child process, killed on drop (also when a test panics).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running slapd. Fields drop in order: the process, then its directory.
struct Slapd {
    _process: Killed,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as `<name>.pem`
/// and `<name>.key`.
fn make_ca(dir: &Path, name: &str) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args([
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ])
        .args(["-subj", &format!("/CN=berth test {name}")])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
}

fn make_server_cert(dir: &Path) {
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes"])
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .args(["-subj", "/CN=127.0.0.1"]));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem"])
        .args(["-CAkey", "ca.key", "-set_serial", "2", "-days", "2"])
        .args(["-extfile", "server.ext", "-out", "server.pem"]));
}

fn slapd_binary() -> PathBuf {
    // Debian puts it in /usr/sbin, often not on a user's PATH.
    let sbin = PathBuf::from("/usr/sbin/slapd");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("slapd")
    }
}

/// True once slapd answers a bind on its unix socket; false if it exited
/// because a port was taken; panics on any other failure.
async fn wait_ready(child: &mut Child, ldapi: &str, log: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    // slapd opens every listener before serving any, so an answer on the
    // socket means both TCP ports are its own.
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("Address already in use") {
                return false;
            }
            panic!("slapd exited ({status}):\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "slapd not ready after 20s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let probe = async {
            let (conn, mut ldap) = ldap3::LdapConnAsync::new(ldapi).await?;
            ldap3::drive!(conn);
            let res = ldap.simple_bind(ROOT_DN, ROOT_PW).await?.success();
            let _ = ldap.unbind().await;
            res
        };
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), probe).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Somewhere in 20000..60000, different per process and per call.
fn candidate_port(attempt: u32) -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mix = nanos ^ std::process::id().wrapping_mul(2_654_435_761) ^ attempt.wrapping_mul(7919);
    20_000 + (mix % 20_000) as u16 * 2
}

impl Slapd {
    async fn start() -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        make_server_cert(d);
        let conf = d.join("slapd.conf");
        let dir_str = d.to_str().unwrap();
        std::fs::write(&conf, SLAPD_CONF.replace("@DIR@", dir_str)).unwrap();
        std::fs::write(d.join("data.ldif"), DATA).unwrap();
        let ldapi = format!(
            "ldapi://{}",
            d.join("ldapi").to_str().unwrap().replace('/', "%2F")
        );

        // Ports are tried, not reserved: slapd exits when one is taken, and
        // we then try others.
        for attempt in 0..30 {
            let port = candidate_port(attempt);
            let tls_port = port + 1;
            let log = d.join(format!("slapd-{attempt}.log"));
            let child = Command::new(slapd_binary())
                .arg("-f")
                .arg(&conf)
                .arg("-h")
                .arg(format!(
                    "{ldapi} ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
                ))
                .args(["-d", "stats"])
                .stdin(Stdio::null())
                .stdout(File::create(&log).unwrap())
                .stderr(File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start slapd (install slapd): {e}"));
            let mut process = Killed(child);
            if wait_ready(&mut process.0, &ldapi, &log).await {
                run(Command::new("ldapadd")
                    .args(["-x", "-H", &ldapi, "-D", ROOT_DN, "-w", ROOT_PW, "-f"])
                    .arg(d.join("data.ldif")));
                return Slapd {
                    _process: process,
                    dir,
                    port,
                    tls_port,
                };
            }
        }
        panic!("slapd found no free ports in 30 attempts");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Plain `ldap://`, the service account, groups under `ou=groups`.
    fn config(&self) -> LdapConfig {
        let mut c: LdapConfig = toml::from_str(&format!(
            r#"
            url = "ldap://127.0.0.1:{}"
            bind_dn = "{READER_DN}"
            bind_password = "{READER_PW}"
            base_dn = "ou=people,{BASE}"
            group_base_dn = "ou=groups,{BASE}"
            timeout_secs = 5
            "#,
            self.port
        ))
        .unwrap();
        c.user_filter = "(objectClass=inetOrgPerson)".into();
        c
    }

    fn ldaps_config(&self, ca: Option<&str>) -> LdapConfig {
        let mut c = self.config();
        c.url = format!("ldaps://127.0.0.1:{}", self.tls_port);
        c.ca_file = ca.map(|name| self.path(name));
        c
    }

    fn start_tls_config(&self, ca: &str) -> LdapConfig {
        let mut c = self.config();
        c.start_tls = true;
        c.ca_file = Some(self.path(ca));
        c
    }
}

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

fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn password_login_reads_email_and_groups() {
    let slapd = Slapd::start().await;
    let d = directory(slapd.config());
    assert_eq!(
        login(&d, "alice", "alice-secret").await,
        Some((
            "alice".into(),
            "alice@example.org".into(),
            groups(&["admins", "developers"])
        ))
    );
    // The directory matches uid without case; the name is its spelling.
    assert_eq!(
        login(&d, "ALICE", "alice-secret").await.map(|i| i.0),
        Some("alice".into())
    );
    // A DN with parentheses and a comma, escaped in the group filter.
    assert_eq!(
        login(&d, "dave", "dave-secret").await,
        Some((
            "dave".into(),
            "dave@example.org".into(),
            groups(&["developers", "ops"])
        ))
    );
    // No mail, no groups.
    assert_eq!(
        login(&d, "bob", "bob-secret").await,
        Some(("bob".into(), String::new(), Vec::new()))
    );
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
    let d = directory(slapd.ldaps_config(Some("ca.pem")));
    assert_eq!(
        login(&d, "alice", "alice-secret").await.map(|i| i.2),
        Some(groups(&["admins", "developers"]))
    );
    assert_eq!(login(&d, "alice", "wrong").await, None);
    // An unknown CA is an error, never a failed login.
    for c in [
        slapd.ldaps_config(Some("other-ca.pem")),
        slapd.ldaps_config(None),
    ] {
        let e = directory(c)
            .authenticate("alice", "alice-secret")
            .await
            .unwrap_err();
        assert!(e.contains("connect"), "{e}");
    }
}

#[tokio::test]
async fn start_tls_trusts_ca_file_only() {
    let slapd = Slapd::start().await;
    let d = directory(slapd.start_tls_config("ca.pem"));
    assert_eq!(
        login(&d, "dave", "dave-secret").await.map(|i| i.1),
        Some("dave@example.org".into())
    );
    assert_eq!(login(&d, "dave", "alice-secret").await, None);
    let e = directory(slapd.start_tls_config("other-ca.pem"))
        .authenticate("dave", "dave-secret")
        .await
        .unwrap_err();
    assert!(e.contains("connect"), "{e}");
}

#[tokio::test]
async fn misconfiguration_is_an_error_not_a_failed_login() {
    let slapd = Slapd::start().await;
    let mut c = slapd.config();
    c.bind_password = "not-the-password".into();
    let e = directory(c)
        .authenticate("alice", "alice-secret")
        .await
        .unwrap_err();
    assert!(e.contains("service account"), "{e}");

    let mut c = slapd.config();
    c.base_dn = format!("ou=nowhere,{BASE}");
    let e = directory(c)
        .authenticate("alice", "alice-secret")
        .await
        .unwrap_err();
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
    let ca = tempfile::tempdir().unwrap();
    make_ca(ca.path(), "ca");
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
            c.ca_file = Some(ca.path().join("ca.pem"));
        }
        let started = Instant::now();
        let e = directory(c).authenticate("alice", "pw").await.unwrap_err();
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
