//! LDAP login for [`Directory`](crate::Directory): a service account finds the
//! user, a bind as that user checks the password, and the group entries that
//! name the user as a member give their groups. One connection per login.

use crate::directory::{valid_user_name, ExternalDirectory, ExternalIdentity};
use crate::model::Role;
use async_trait::async_trait;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, ResultEntry, Scope, SearchEntry,
    SearchOptions, SearchResult,
};
use rustls::ClientConfig;
use serde::Deserialize;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The `[ldap]` table of the configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// The server: `ldap://host[:port]` (389 by default) or
    /// `ldaps://host[:port]` (636 by default, TLS from the first byte).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything else is
    /// sent. Not with `ldaps://`, which is TLS already.
    #[serde(default)]
    pub start_tls: bool,
    /// DN of the service account that searches for users and groups. Empty:
    /// search anonymously.
    #[serde(default)]
    pub bind_dn: String,
    /// Password of the service account. `bind_password_file` keeps it out of
    /// the configuration file.
    #[serde(default)]
    pub bind_password: String,
    /// A file holding the service account's password (a trailing newline is
    /// ignored), instead of `bind_password`.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched for (the whole subtree).
    pub base_dn: String,
    /// What a user entry must also match, e.g. `(objectClass=inetOrgPerson)`
    /// or `(memberOf=cn=registry,ou=groups,dc=example,dc=org)`.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// The attribute holding the login name (`uid`; `sAMAccountName` for
    /// Active Directory).
    #[serde(default = "default_uid_attribute")]
    pub uid_attribute: String,
    /// The attribute holding the e-mail address.
    #[serde(default = "default_email_attribute")]
    pub email_attribute: String,
    /// Where groups are searched for (the whole subtree). Defaults to
    /// `base_dn`.
    #[serde(default)]
    pub group_base_dn: Option<String>,
    /// What a group entry must match.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// The attribute of a group entry that lists its members' DNs.
    #[serde(default = "default_group_member_attribute")]
    pub group_member_attribute: String,
    /// The attribute of a group entry that holds its name, as used in
    /// `group_roles` and in group members of projects.
    #[serde(default = "default_group_name_attribute")]
    pub group_name_attribute: String,
    /// Roles that members of an LDAP group have in a project.
    #[serde(default)]
    pub group_roles: Vec<GroupRole>,
    /// PEM file of the CA certificate(s) to trust for `ldaps://` and
    /// StartTLS, instead of the system's. Without it, the system's CAs.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds that each network step (connect and TLS, each bind, each
    /// search) may take before the login fails.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// Members of LDAP group `group` have `role` in `project`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRole {
    /// The group's name, from `group_name_attribute`, spelt as the directory
    /// spells it.
    pub group: String,
    /// The project's name.
    pub project: String,
    /// One of `project_admin`, `maintainer`, `developer`, `guest`,
    /// `limited_guest`.
    pub role: Role,
}

/// The functions that serde's `default = "..."` names, one per optional
/// setting: its default.
macro_rules! defaults {
    ($($name:ident: $ty:ty = $value:expr;)*) => {
        $(fn $name() -> $ty { $value })*
    };
}

defaults! {
    default_user_filter: String = "(objectClass=person)".to_owned();
    default_uid_attribute: String = "uid".to_owned();
    default_email_attribute: String = "mail".to_owned();
    default_group_filter: String = "(objectClass=groupOfNames)".to_owned();
    default_group_member_attribute: String = "member".to_owned();
    default_group_name_attribute: String = "cn".to_owned();
    default_timeout_secs: u64 = 5;
}

impl LdapConfig {
    /// The `group_roles` in the form [`Directory::with_external`] takes.
    ///
    /// [`Directory::with_external`]: crate::Directory::with_external
    pub fn group_role_grants(&self) -> Vec<(String, String, Role)> {
        self.group_roles
            .iter()
            .map(|g| (g.group.clone(), g.project.clone(), g.role))
            .collect()
    }
}

// By hand, so that the password never reaches a log line.
impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.bind_password.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &password)
            .field("bind_password_file", &self.bind_password_file)
            .field("base_dn", &self.base_dn)
            .field("user_filter", &self.user_filter)
            .field("uid_attribute", &self.uid_attribute)
            .field("email_attribute", &self.email_attribute)
            .field("group_base_dn", &self.group_base_dn)
            .field("group_filter", &self.group_filter)
            .field("group_member_attribute", &self.group_member_attribute)
            .field("group_name_attribute", &self.group_name_attribute)
            .field("group_roles", &self.group_roles)
            .field("ca_file", &self.ca_file)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// LDAP result codes of a bind that mean "not with these credentials":
/// inappropriateAuthentication, invalidCredentials, insufficientAccessRights,
/// unwillingToPerform (a locked or expired account, or an unauthenticated
/// bind the server refuses).
const REJECTED_BIND: [u32; 4] = [48, 49, 50, 53];
const SUCCESS: u32 = 0;
const SIZE_LIMIT_EXCEEDED: u32 = 4;
const NO_SUCH_OBJECT: u32 = 32;

/// Checks passwords against an LDAP server; see the module documentation.
pub struct LdapDirectory {
    config: LdapConfig,
    /// From `bind_password` or `bind_password_file`.
    bind_password: String,
    /// Present for `ldaps://` and StartTLS.
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    /// `user_filter` and `group_filter`, parenthesised.
    user_filter: String,
    group_filter: String,
}

impl LdapDirectory {
    /// Checks the configuration and reads the password and CA files; no
    /// network access (a directory that is down must not stop the registry
    /// from starting).
    pub fn new(config: LdapConfig) -> Result<Self, String> {
        let url = config.url.to_ascii_lowercase();
        let ldaps = if url.starts_with("ldaps://") {
            true
        } else if url.starts_with("ldap://") {
            false
        } else {
            return Err(format!(
                "ldap.url {:?}: must start with ldap:// or ldaps://",
                config.url
            ));
        };
        if ldaps && config.start_tls {
            return Err("ldap.start_tls is for ldap:// URLs; ldaps:// is TLS already".into());
        }
        if config.timeout_secs == 0 {
            return Err("ldap.timeout_secs must be at least 1".into());
        }
        if config.base_dn.trim().is_empty() {
            return Err("ldap.base_dn is empty".into());
        }
        for (key, value) in [
            ("uid_attribute", &config.uid_attribute),
            ("email_attribute", &config.email_attribute),
            ("group_member_attribute", &config.group_member_attribute),
            ("group_name_attribute", &config.group_name_attribute),
        ] {
            // They are pasted into filters: anything else would change them.
            let valid = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.;".contains(&b));
            if !valid {
                return Err(format!("ldap.{key} {value:?} is not an attribute name"));
            }
        }
        let user_filter = parenthesised(&config.user_filter);
        let group_filter = parenthesised(&config.group_filter);
        // A broken filter would otherwise only show at the first login.
        for (key, filter) in [
            (
                "user_filter",
                search_filter(&user_filter, &config.uid_attribute, "x"),
            ),
            (
                "group_filter",
                search_filter(&group_filter, &config.group_member_attribute, "x"),
            ),
        ] {
            if ldap3::parse_filter(&filter).is_err() {
                return Err(format!("ldap.{key}: {filter:?} is not a valid filter"));
            }
        }

        let bind_password = match &config.bind_password_file {
            Some(_) if !config.bind_password.is_empty() => {
                return Err("ldap: set bind_password or bind_password_file, not both".into());
            }
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("ldap.bind_password_file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            None => config.bind_password.clone(),
        };
        if config.bind_dn.is_empty() != bind_password.is_empty() {
            // A DN with an empty password is an unauthenticated bind, which
            // servers either refuse or silently treat as anonymous.
            return Err("ldap: bind_dn and its password go together".into());
        }

        let tls = if ldaps || config.start_tls {
            Some(tls_config(config.ca_file.as_deref())?)
        } else if config.ca_file.is_some() {
            return Err(
                "ldap.ca_file is set but the connection is not TLS: use ldaps:// or start_tls"
                    .into(),
            );
        } else {
            tracing::warn!(
                url = %config.url,
                "LDAP without TLS: passwords travel in clear; use ldaps:// or start_tls"
            );
            None
        };

        Ok(LdapDirectory {
            timeout: Duration::from_secs(config.timeout_secs),
            config,
            bind_password,
            tls,
            user_filter,
            group_filter,
        })
    }

    /// Runs one network step with the configured deadline.
    async fn within<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, LdapError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("LDAP {what} at {}: {e}", self.config.url)),
            Err(_) => Err(format!(
                "LDAP {what} at {}: no answer within {}s",
                self.config.url, self.config.timeout_secs
            )),
        }
    }

    async fn connect(&self) -> Result<Session, String> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.config.start_tls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = self
            .within(
                "connect",
                LdapConnAsync::with_settings(settings, &self.config.url),
            )
            .await?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!("LDAP connection ended: {e}");
            }
        });
        Ok(Session { ldap, driver })
    }

    /// Binds as the service account, or anonymously without one.
    async fn bind_service(&self, ldap: &mut Ldap) -> Result<(), String> {
        let res = self
            .within(
                "bind as the service account",
                ldap.simple_bind(&self.config.bind_dn, &self.bind_password),
            )
            .await?;
        if res.rc != SUCCESS {
            return Err(format!(
                "LDAP bind as the service account {:?} at {} failed: {res}",
                self.config.bind_dn, self.config.url
            ));
        }
        Ok(())
    }

    /// A subtree search; also returns whether the size limit cut it short.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: &[&str],
        size_limit: i32,
    ) -> Result<(Vec<SearchEntry>, bool), String> {
        let time_limit = i32::try_from(self.config.timeout_secs).unwrap_or(i32::MAX);
        let options = SearchOptions::new()
            .sizelimit(size_limit)
            .timelimit(time_limit);
        let SearchResult(raw, res) = self
            .within(
                "search",
                ldap.with_search_options(options).search(
                    base,
                    Scope::Subtree,
                    filter,
                    attrs.to_vec(),
                ),
            )
            .await?;
        match res.rc {
            SUCCESS | SIZE_LIMIT_EXCEEDED => {}
            NO_SUCH_OBJECT => {
                return Err(format!(
                    "LDAP search base {base:?} does not exist at {}",
                    self.config.url
                ))
            }
            _ => {
                return Err(format!(
                    "LDAP search under {base:?} at {} failed: {res}",
                    self.config.url
                ))
            }
        }
        let entries = raw.into_iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        Ok((entries, res.rc == SIZE_LIMIT_EXCEEDED))
    }

    async fn login(
        &self,
        ldap: &mut Ldap,
        user: &str,
        password: &str,
    ) -> Result<Option<ExternalIdentity>, String> {
        self.bind_service(ldap).await?;
        let filter = search_filter(&self.user_filter, &self.config.uid_attribute, user);
        let attrs = [
            self.config.uid_attribute.as_str(),
            self.config.email_attribute.as_str(),
        ];
        // Two are enough to tell "exactly one" from "several".
        let (mut found, cut) = self
            .search(ldap, &self.config.base_dn, &filter, &attrs, 2)
            .await?;
        if cut || found.len() > 1 {
            tracing::warn!(user, "LDAP: several entries match this login name; refused");
            return Ok(None);
        }
        let Some(entry) = found.pop() else {
            return Ok(None);
        };

        let res = self
            .within("bind as the user", ldap.simple_bind(&entry.dn, password))
            .await?;
        if REJECTED_BIND.contains(&res.rc) {
            return Ok(None);
        }
        if res.rc != SUCCESS {
            return Err(format!(
                "LDAP bind as {:?} at {} failed: {res}",
                entry.dn, self.config.url
            ));
        }

        // The directory's spelling, so that `Alice` and `alice` are one user.
        let uids = values(&entry, &self.config.uid_attribute);
        let name = uids
            .iter()
            .find(|v| v.to_lowercase() == user.to_lowercase())
            .or(uids.first())
            .map_or(user, String::as_str)
            .to_owned();
        if !valid_user_name(&name) {
            tracing::warn!(name, "LDAP: login name not usable in the registry; refused");
            return Ok(None);
        }
        let email = values(&entry, &self.config.email_attribute)
            .first()
            .cloned()
            .unwrap_or_default();

        // Groups as the service account: users often may not read them.
        self.bind_service(ldap).await?;
        let groups = self.groups(ldap, &entry.dn).await?;
        Ok(Some(ExternalIdentity {
            name,
            email,
            groups,
        }))
    }

    async fn groups(&self, ldap: &mut Ldap, user_dn: &str) -> Result<Vec<String>, String> {
        let base = self
            .config
            .group_base_dn
            .as_deref()
            .unwrap_or(&self.config.base_dn);
        let filter = search_filter(
            &self.group_filter,
            &self.config.group_member_attribute,
            user_dn,
        );
        let (found, cut) = self
            .search(
                ldap,
                base,
                &filter,
                &[self.config.group_name_attribute.as_str()],
                0,
            )
            .await?;
        if cut {
            // Fewer groups only ever means fewer rights.
            tracing::warn!(
                user_dn,
                "LDAP: the server's size limit cut the group list short"
            );
        }
        let mut groups: Vec<String> = found
            .iter()
            .filter_map(|g| {
                values(g, &self.config.group_name_attribute)
                    .first()
                    .cloned()
            })
            .collect();
        groups.sort();
        groups.dedup();
        Ok(groups)
    }
}

#[async_trait]
impl ExternalDirectory for LdapDirectory {
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<ExternalIdentity>, String> {
        // An empty password makes a bind "unauthenticated", which some
        // servers answer with success: never let one reach the server.
        if password.is_empty() || !valid_user_name(user) {
            return Ok(None);
        }
        let mut session = self.connect().await?;
        let outcome = self.login(&mut session.ldap, user, password).await;
        if outcome.is_ok() {
            // Politeness only; the connection is dropped either way.
            let _ = tokio::time::timeout(self.timeout, session.ldap.unbind()).await;
        }
        outcome
    }
}

/// A connection and the task that drives it, stopped when the login ends
/// even if the server stopped answering.
struct Session {
    ldap: Ldap,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// `(&<filter>(<attribute>=<value>))` with `value` escaped as RFC 4515 asks
/// (`*`, `(`, `)`, `\` and NUL), so that a login name is only ever a value.
fn search_filter(filter: &str, attribute: &str, value: &str) -> String {
    format!("(&{filter}({attribute}={}))", ldap3::ldap_escape(value))
}

/// `objectClass=person` written without its parentheses still works.
fn parenthesised(filter: &str) -> String {
    let filter = filter.trim();
    if filter.starts_with('(') {
        filter.to_owned()
    } else {
        format!("({filter})")
    }
}

/// An attribute's values; names of attributes compare without case.
fn values<'a>(entry: &'a SearchEntry, attribute: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attribute))
        .map_or(&[], |(_, v)| v.as_slice())
}

/// ldap3 panics on a malformed entry; a broken or hostile server must fail
/// the login, not the request handler.
fn entry(raw: ResultEntry) -> Result<SearchEntry, String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(raw)))
        .map_err(|_| "malformed entry in an LDAP search result".to_owned())
}

/// A rustls client with the ring provider named explicitly, so that another
/// crate enabling a second provider cannot make the choice ambiguous.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    berth_net::tls_config(&berth_net::TlsClient::with_ca(ca_file), "ldap").map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> LdapConfig {
        toml::from_str(&format!(
            "url = \"ldap://127.0.0.1:389\"\nbase_dn = \"dc=example,dc=org\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn defaults() {
        let c = config("");
        assert!(!c.start_tls);
        assert_eq!(c.bind_dn, "");
        assert_eq!(c.user_filter, "(objectClass=person)");
        assert_eq!(c.uid_attribute, "uid");
        assert_eq!(c.email_attribute, "mail");
        assert_eq!(c.group_base_dn, None);
        assert_eq!(c.group_filter, "(objectClass=groupOfNames)");
        assert_eq!(c.group_member_attribute, "member");
        assert_eq!(c.group_name_attribute, "cn");
        assert!(c.group_roles.is_empty());
        assert_eq!(c.ca_file, None);
        assert_eq!(c.timeout_secs, 5);
    }

    #[test]
    fn unknown_keys_and_roles() {
        assert!(toml::from_str::<LdapConfig>(
            "url = \"ldap://h\"\nbase_dn = \"dc=x\"\nbind_passwd = \"typo\""
        )
        .is_err());
        let c = config(
            "[[group_roles]]\ngroup = \"devs\"\nproject = \"team\"\nrole = \"limited_guest\"",
        );
        assert_eq!(
            c.group_role_grants(),
            vec![("devs".into(), "team".into(), Role::LimitedGuest)]
        );
        assert!(toml::from_str::<LdapConfig>(
            "url = \"ldap://h\"\nbase_dn = \"dc=x\"\n[[group_roles]]\ngroup = \"d\"\nproject = \"p\"\nrole = \"owner\""
        )
        .is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let c = config("bind_dn = \"cn=svc\"\nbind_password = \"hunter2\"");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn rejected_configurations() {
        for (extra, why) in [
            (
                "start_tls = true\nurl = \"ldaps://h\"",
                "start_tls with ldaps",
            ),
            ("timeout_secs = 0", "zero timeout"),
            ("bind_dn = \"cn=svc\"", "bind_dn without password"),
            ("bind_password = \"p\"", "password without bind_dn"),
            ("uid_attribute = \"uid)(x\"", "attribute with parentheses"),
            ("user_filter = \"(objectClass=person\"", "unbalanced filter"),
            ("ca_file = \"/dev/null\"", "ca_file without TLS"),
            (
                "bind_dn = \"cn=svc\"\nbind_password = \"p\"\nbind_password_file = \"/dev/null\"",
                "both passwords",
            ),
        ] {
            let text = format!("base_dn = \"dc=x\"\n{extra}");
            let text = if extra.contains("url") {
                text
            } else {
                format!("url = \"ldap://h\"\n{text}")
            };
            let c: LdapConfig = toml::from_str(&text).unwrap();
            assert!(LdapDirectory::new(c).is_err(), "{why}");
        }
        let mut c = config("");
        c.url = "http://h".into();
        assert!(LdapDirectory::new(c).is_err(), "scheme");
        assert!(LdapDirectory::new(config("")).is_ok());
    }

    #[test]
    fn password_file_loses_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let mut c = config("bind_dn = \"cn=svc\"");
        c.bind_password_file = Some(path);
        assert_eq!(LdapDirectory::new(c).unwrap().bind_password, "s3cret");
    }

    #[test]
    fn login_names_are_values_in_filters() {
        let f = |v| search_filter("(objectClass=person)", "uid", v);
        assert_eq!(f("alice"), "(&(objectClass=person)(uid=alice))");
        assert_eq!(f("*"), "(&(objectClass=person)(uid=\\2a))");
        assert_eq!(
            f(")(uid=*"),
            "(&(objectClass=person)(uid=\\29\\28uid=\\2a))"
        );
        assert_eq!(f("a\\b\0"), "(&(objectClass=person)(uid=a\\5cb\\00))");
        assert_eq!(
            parenthesised(" objectClass=person "),
            "(objectClass=person)"
        );
    }
}
