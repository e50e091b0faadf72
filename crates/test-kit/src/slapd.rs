//! A real OpenLDAP server (Debian's `slapd` and `ldap-utils`) for tests,
//! configured from a temporary directory with its own CA ([`Pki`]) for LDAPS
//! and StartTLS, and killed on drop: for berth-auth's LDAP tests and the
//! registry's end-to-end LDAP and UI tests.

use crate::pki::Pki;
use crate::{random_u64, stdout_ok, Killed};
use berth_auth::ldap::LdapConfig;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE: &str = "dc=example,dc=org";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub const ROOT_PW: &str = "root-secret";
pub const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=org";
pub const READER_PW: &str = "reader-secret";
pub const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";

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
TLSCACertificateFile @DIR@/ca.crt
TLSCertificateFile @DIR@/server.crt
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

/// A running slapd. Fields drop in order: the process, then its directory.
pub struct Slapd {
    _process: Killed,
    pub dir: tempfile::TempDir,
    /// Its CA (`pki.ca`) signed the server certificate; `pki.other_ca`
    /// signed nothing here.
    pub pki: Pki,
    pub port: u16,
    pub tls_port: u16,
}

fn run(cmd: &mut Command) {
    let what = format!("{cmd:?}");
    stdout_ok(
        cmd.output().unwrap_or_else(|e| panic!("{what}: {e}")),
        &what,
    );
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
        // ldap-utils' own client, so that the harness needs no LDAP crate.
        let probe = Command::new("ldapwhoami")
            .args([
                "-x",
                "-o",
                "nettimeout=1",
                "-H",
                ldapi,
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PW,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if probe.is_ok_and(|s| s.success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Slapd {
    pub async fn start() -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        let pki = Pki::create(d);
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
            // Somewhere in 20000..60000.
            let port = 20_000 + (random_u64() % 20_000) as u16 * 2;
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
                    pki,
                    port,
                    tls_port,
                };
            }
        }
        panic!("slapd found no free ports in 30 attempts");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Plain `ldap://`, the service account, groups under `ou=groups`.
    pub fn config(&self) -> LdapConfig {
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

    /// The `[ldap]` section of a berth configuration on this server, as
    /// [`Slapd::config`], giving each `(group, project, role)` of
    /// `group_roles`.
    pub fn berth_toml(&self, group_roles: &[(&str, &str, &str)]) -> String {
        let mut toml = format!(
            r#"
[ldap]
url = "ldap://127.0.0.1:{port}"
bind_dn = "{READER_DN}"
bind_password = "{READER_PW}"
base_dn = "ou=people,{BASE}"
group_base_dn = "ou=groups,{BASE}"
user_filter = "(objectClass=inetOrgPerson)"
"#,
            port = self.port
        );
        for (group, project, role) in group_roles {
            toml.push_str(&format!(
                "\n[[ldap.group_roles]]\ngroup = \"{group}\"\nproject = \"{project}\"\nrole = \"{role}\"\n"
            ));
        }
        toml
    }

    /// LDAPS, trusting `ca` (or the system's CAs).
    pub fn ldaps_config(&self, ca: Option<&Path>) -> LdapConfig {
        let mut c = self.config();
        c.url = format!("ldaps://127.0.0.1:{}", self.tls_port);
        c.ca_file = ca.map(Path::to_path_buf);
        c
    }

    /// StartTLS on the plain port, trusting `ca`.
    pub fn start_tls_config(&self, ca: &Path) -> LdapConfig {
        let mut c = self.config();
        c.start_tls = true;
        c.ca_file = Some(ca.to_path_buf());
        c
    }
}
