//! Users, projects, members and robot accounts, stored in `Kv` under the
//! keys of [`crate::keys`], and password authentication against them (and
//! an external directory such as LDAP when one is configured). The
//! directory also hands out the web UI's session records
//! ([`Directory::sessions`]), kept in the same store, so that no HTTP
//! crate needs the store itself.

use crate::model::{
    robot_name, MemberRecord, Principal, ProjectRecord, RobotPermission, RobotRecord, Role,
    UserRecord, ROBOT_NAME_PREFIX,
};
use crate::sessions::Sessions;
use crate::{keys, password, secret};
use async_trait::async_trait;
use berth_core::kv::{Kv, KvError, Txn};
use berth_core::{Clock, SystemClock};
use serde::de::DeserializeOwned;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] KvError),
    #[error("{0}")]
    Internal(String),
}

/// An identity confirmed by an external directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
}

/// A directory that can check passwords (LDAP).
#[async_trait]
pub trait ExternalDirectory: Send + Sync {
    /// `Ok(None)` for wrong credentials or an unknown user.
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<ExternalIdentity>, String>;
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The record stored under `key`.
fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, DirectoryError> {
    serde_json::from_slice(value)
        .map_err(|e| DirectoryError::Internal(format!("corrupt record {key}: {e}")))
}

/// Refuses a password shorter than 8 characters.
fn check_password(pass: &str) -> Result<(), DirectoryError> {
    if pass.len() < 8 {
        return Err(DirectoryError::Invalid(
            "password must have at least 8 characters".into(),
        ));
    }
    Ok(())
}

/// User names: printable, no space, no `:` (Basic auth splits on it), no
/// `$` (robot names), at most 255 bytes. `@` is allowed: directory users are
/// often e-mail addresses.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != ':' && c != '$')
}

/// Robot short names: like project path components.
fn valid_robot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// Where a record is kept, and how a failure names it.
struct Named {
    key: String,
    what: String,
}

impl Named {
    fn user(name: &str) -> Named {
        Named {
            key: keys::user(name),
            what: format!("user {name}"),
        }
    }

    fn project(name: &str) -> Named {
        Named {
            key: keys::project(name),
            what: format!("project {name}"),
        }
    }

    fn robot(full_name: &str) -> Named {
        Named {
            key: keys::robot(full_name),
            what: full_name.to_owned(),
        }
    }
}

#[derive(Clone)]
pub struct Directory {
    kv: Arc<dyn Kv>,
    sessions: Sessions,
    external: Option<Arc<dyn ExternalDirectory>>,
    /// LDAP group -> (project, role) grants from configuration.
    group_roles: Arc<Vec<(String, String, Role)>>,
}

impl Directory {
    pub fn new(kv: Arc<dyn Kv>) -> Self {
        Directory {
            sessions: Sessions::new(kv.clone()),
            kv,
            external: None,
            group_roles: Arc::new(Vec::new()),
        }
    }

    pub fn with_external(
        mut self,
        external: Arc<dyn ExternalDirectory>,
        group_roles: Vec<(String, String, Role)>,
    ) -> Self {
        self.external = Some(external);
        self.group_roles = Arc::new(group_roles);
        self
    }

    /// The web UI's login sessions, kept in the directory's store.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DirectoryError> {
        Ok(self.read_versioned(key).await?.map(|(record, _)| record))
    }

    /// A record with its version.
    async fn read_versioned<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, u64)>, DirectoryError> {
        match self.kv.get(key).await? {
            None => Ok(None),
            Some(v) => Ok(Some((decode(key, &v.value)?, v.version))),
        }
    }

    async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, DirectoryError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.kv.scan(prefix, after.as_deref(), 500).await?;
            let full = page.len() == 500;
            after = page.last().map(|(k, _)| k.clone());
            for (k, v) in page {
                out.push(decode(&k, &v.value)?);
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// Creates the record `at`; [`DirectoryError::Exists`] when there is
    /// one already.
    async fn create<T: serde::Serialize>(
        &self,
        at: Named,
        value: &T,
    ) -> Result<(), DirectoryError> {
        let key = at.key.as_str();
        if self
            .kv
            .commit(Txn::new().if_unchanged(key, None).put(key, encode(value)))
            .await?
        {
            Ok(())
        } else {
            Err(DirectoryError::Exists(at.what))
        }
    }

    /// Read-modify-write of one record, retried until no concurrent write
    /// intervenes.
    async fn modify<T: DeserializeOwned + serde::Serialize>(
        &self,
        at: Named,
        change: impl Fn(&mut T),
    ) -> Result<T, DirectoryError> {
        let key = at.key.as_str();
        loop {
            let Some(seen) = self.kv.get(key).await? else {
                return Err(DirectoryError::NotFound(at.what));
            };
            let mut record: T = decode(key, &seen.value)?;
            change(&mut record);
            let txn = Txn::new()
                .if_unchanged(key, Some(&seen))
                .put(key, encode(&record));
            if self.kv.commit(txn).await? {
                return Ok(record);
            }
        }
    }

    async fn remove(&self, at: Named) -> Result<(), DirectoryError> {
        let key = at.key.as_str();
        let Some(seen) = self.kv.get(key).await? else {
            return Err(DirectoryError::NotFound(at.what));
        };
        self.kv
            .commit(Txn::new().if_unchanged(key, Some(&seen)).delete(key))
            .await?;
        Ok(())
    }

    // ---- users

    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, DirectoryError> {
        self.read(&keys::user(name)).await
    }

    /// A user's record with its version (see [`Directory::account_version`]),
    /// read together, so that what is checked is what was read.
    pub async fn user_versioned(
        &self,
        name: &str,
    ) -> Result<Option<(UserRecord, u64)>, DirectoryError> {
        self.read_versioned(&keys::user(name)).await
    }

    pub async fn users(&self) -> Result<Vec<UserRecord>, DirectoryError> {
        self.list(keys::USER_PREFIX).await
    }

    pub async fn create_user(
        &self,
        name: &str,
        pass: &str,
        admin: bool,
        email: &str,
    ) -> Result<UserRecord, DirectoryError> {
        if !valid_user_name(name) {
            return Err(DirectoryError::Invalid(format!("user name {name:?}")));
        }
        check_password(pass)?;
        let record = UserRecord {
            name: name.to_owned(),
            password_hash: password::hash(pass).map_err(DirectoryError::Internal)?,
            admin,
            email: email.to_owned(),
            source: "local".into(),
            created: SystemClock.now(),
        };
        self.create(Named::user(name), &record).await?;
        Ok(record)
    }

    pub async fn update_user(
        &self,
        name: &str,
        pass: Option<&str>,
        admin: Option<bool>,
    ) -> Result<UserRecord, DirectoryError> {
        pass.map(check_password).transpose()?;
        let hash = pass
            .map(password::hash)
            .transpose()
            .map_err(DirectoryError::Internal)?;
        self.modify(Named::user(name), |u: &mut UserRecord| {
            if let Some(h) = &hash {
                u.password_hash = h.clone();
            }
            if let Some(a) = admin {
                u.admin = a;
            }
        })
        .await
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), DirectoryError> {
        self.remove(Named::user(name)).await
    }

    /// Creates `admin` on first start. Returns the generated password when
    /// none was given, to be printed once.
    pub async fn ensure_admin(
        &self,
        given: Option<&str>,
    ) -> Result<Option<String>, DirectoryError> {
        if self.user("admin").await?.is_some() {
            return Ok(None);
        }
        let generated = given.is_none().then(secret::generate);
        let pass = given.or(generated.as_deref()).unwrap_or_default();
        match self.create_user("admin", pass, true, "").await {
            Ok(_) => Ok(generated),
            // Another node created it first.
            Err(DirectoryError::Exists(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ---- projects

    pub async fn project(&self, name: &str) -> Result<Option<ProjectRecord>, DirectoryError> {
        self.read(&keys::project(name)).await
    }

    pub async fn projects(&self) -> Result<Vec<ProjectRecord>, DirectoryError> {
        self.list(keys::PROJECT_PREFIX).await
    }

    pub async fn create_project(
        &self,
        name: &str,
        public: bool,
    ) -> Result<ProjectRecord, DirectoryError> {
        let valid = berth_oci::RepoName::parse(name).is_some_and(|n| !n.as_str().contains('/'));
        if !valid {
            return Err(DirectoryError::Invalid(format!("project name {name:?}")));
        }
        let record = ProjectRecord {
            name: name.to_owned(),
            public,
            created: SystemClock.now(),
        };
        self.create(Named::project(name), &record).await?;
        Ok(record)
    }

    pub async fn set_project_public(
        &self,
        name: &str,
        public: bool,
    ) -> Result<ProjectRecord, DirectoryError> {
        self.modify(Named::project(name), |p: &mut ProjectRecord| {
            p.public = public
        })
        .await
    }

    pub async fn delete_project(&self, name: &str) -> Result<(), DirectoryError> {
        self.remove(Named::project(name)).await
    }

    // ---- members

    pub async fn set_member(
        &self,
        project: &str,
        kind: &str,
        name: &str,
        role: Role,
    ) -> Result<MemberRecord, DirectoryError> {
        if kind != "user" && kind != "group" {
            return Err(DirectoryError::Invalid(format!("member kind {kind:?}")));
        }
        if self.project(project).await?.is_none() {
            return Err(DirectoryError::NotFound(format!("project {project}")));
        }
        if kind == "user" && self.user(name).await?.is_none() {
            return Err(DirectoryError::NotFound(format!("user {name}")));
        }
        let record = MemberRecord {
            project: project.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            role,
        };
        self.kv
            .put(&keys::member(project, kind, name), encode(&record))
            .await?;
        Ok(record)
    }

    pub async fn remove_member(
        &self,
        project: &str,
        kind: &str,
        name: &str,
    ) -> Result<(), DirectoryError> {
        self.remove(Named {
            key: keys::member(project, kind, name),
            what: format!("member {name}"),
        })
        .await
    }

    pub async fn members(&self, project: &str) -> Result<Vec<MemberRecord>, DirectoryError> {
        self.list(&keys::member_prefix(project)).await
    }

    /// The best role `principal` has in `project`: as a user member, through
    /// a group member, or through a configured group mapping.
    pub async fn role_of(
        &self,
        principal: &Principal,
        project: &str,
    ) -> Result<Option<Role>, DirectoryError> {
        let Principal::User { name, groups, .. } = principal else {
            return Ok(None);
        };
        let mut best: Option<Role> = self
            .read::<MemberRecord>(&keys::member(project, "user", name))
            .await?
            .map(|m| m.role);
        for g in groups {
            if let Some(m) = self
                .read::<MemberRecord>(&keys::member(project, "group", g))
                .await?
            {
                best = Some(best.map_or(m.role, |b| b.min(m.role)));
            }
            for (group, proj, role) in self.group_roles.iter() {
                if group == g && proj == project {
                    best = Some(best.map_or(*role, |b| b.min(*role)));
                }
            }
        }
        Ok(best)
    }

    // ---- robots

    /// Creates a robot and returns its record and its secret (shown once).
    pub async fn create_robot(
        &self,
        project: Option<&str>,
        name: &str,
        permissions: Vec<RobotPermission>,
        expires_at: Option<u64>,
        description: &str,
    ) -> Result<(RobotRecord, String), DirectoryError> {
        if !valid_robot_name(name) {
            return Err(DirectoryError::Invalid(format!("robot name {name:?}")));
        }
        let full = match project {
            Some(p) => {
                if self.project(p).await?.is_none() {
                    return Err(DirectoryError::NotFound(format!("project {p}")));
                }
                if permissions.iter().any(|perm| perm.project != p) {
                    return Err(DirectoryError::Invalid(format!(
                        "a robot of project {p} can only have permissions on {p}"
                    )));
                }
                robot_name(Some(p), name)
            }
            None => robot_name(None, name),
        };
        let secret = secret::generate();
        let record = RobotRecord {
            name: full.clone(),
            secret_sha256: secret::sha256_hex(&secret),
            permissions,
            expires_at,
            description: description.to_owned(),
            created: SystemClock.now(),
        };
        self.create(Named::robot(&full), &record).await?;
        Ok((record, secret))
    }

    pub async fn robots(&self) -> Result<Vec<RobotRecord>, DirectoryError> {
        self.list(keys::ROBOT_PREFIX).await
    }

    pub async fn robot(&self, full_name: &str) -> Result<Option<RobotRecord>, DirectoryError> {
        self.read(&keys::robot(full_name)).await
    }

    pub async fn revoke_robot(&self, full_name: &str) -> Result<(), DirectoryError> {
        self.remove(Named::robot(full_name)).await
    }

    // ---- authentication

    /// The version of an account's record, or `None` when the account is
    /// gone or (a robot) expired. A cached login and a web UI session stay
    /// valid only while this is unchanged, so a password change, a deletion
    /// or a revocation takes effect at once on every node. An account
    /// deleted and created again under the same name has a new version:
    /// `Kv` versions are global and never reused (`kv_suite` holds every
    /// backend to it), so the new account is never taken for the old one.
    pub async fn account_version(&self, name: &str) -> Result<Option<u64>, DirectoryError> {
        if name.starts_with(ROBOT_NAME_PREFIX) {
            let robot = self
                .read_versioned::<RobotRecord>(&keys::robot(name))
                .await?;
            return Ok(robot
                .filter(|(robot, _)| robot.live(SystemClock.now()))
                .map(|(_, version)| version));
        }
        Ok(self.kv.get(&keys::user(name)).await?.map(|v| v.version))
    }

    /// Checks a name and password (or robot secret). `Ok(None)` for any
    /// failure, without saying which part was wrong.
    pub async fn authenticate(
        &self,
        name: &str,
        pass: &str,
    ) -> Result<Option<Principal>, DirectoryError> {
        if name.starts_with(ROBOT_NAME_PREFIX) {
            let Some(robot) = self.robot(name).await? else {
                return Ok(None);
            };
            if robot.live(SystemClock.now()) && secret::matches(pass, &robot.secret_sha256) {
                return Ok(Some(Principal::Robot {
                    name: robot.name,
                    permissions: robot.permissions,
                }));
            }
            return Ok(None);
        }
        match self.user(name).await? {
            Some(u) if u.source == "local" => {
                let ok = password::verify(pass, &u.password_hash);
                Ok(ok.then(|| Principal::User {
                    name: u.name,
                    admin: u.admin,
                    groups: Vec::new(),
                }))
            }
            existing => {
                let Some(external) = &self.external else {
                    if existing.is_none() {
                        // Spend the same time as a real check, so that a
                        // response time does not reveal which users exist.
                        let _ = password::verify(pass, DUMMY_HASH);
                    }
                    return Ok(None);
                };
                let Some(identity) = external
                    .authenticate(name, pass)
                    .await
                    .map_err(DirectoryError::Internal)?
                else {
                    return Ok(None);
                };
                // The directory's spelling of the name is the one stored.
                let existing = match existing {
                    Some(u) => Some(u),
                    None => self.user(&identity.name).await?,
                };
                let admin = match existing {
                    Some(u) => u.admin,
                    None => {
                        let record = UserRecord {
                            name: identity.name.clone(),
                            password_hash: String::new(),
                            admin: false,
                            email: identity.email.clone(),
                            source: "ldap".into(),
                            created: SystemClock.now(),
                        };
                        // First login of a directory user: remember them so
                        // that they can be made members of projects (unless
                        // a concurrent login just did).
                        match self.create(Named::user(&identity.name), &record).await {
                            Ok(()) | Err(DirectoryError::Exists(_)) => false,
                            Err(e) => return Err(e),
                        }
                    }
                };
                Ok(Some(Principal::User {
                    name: identity.name,
                    admin,
                    groups: identity.groups,
                }))
            }
        }
    }
}

/// argon2id of a random string nobody knows.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Xh0HxvsPzO0mpWJHHmzZBqZgOlxGFNqXgZW8k3ByYXU";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Action;
    use berth_core::MemoryKv;

    fn dir() -> Directory {
        Directory::new(Arc::new(MemoryKv::new()))
    }

    async fn logs_in(d: &Directory, name: &str, pass: &str) -> bool {
        d.authenticate(name, pass).await.unwrap().is_some()
    }

    #[test]
    fn dummy_hash_is_a_real_argon2id_hash() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[tokio::test]
    async fn users_and_admin_bootstrap() {
        let d = dir();
        let generated = d
            .ensure_admin(None)
            .await
            .unwrap()
            .expect("a generated password");
        assert!(d.ensure_admin(None).await.unwrap().is_none(), "only once");
        let p = d.authenticate("admin", &generated).await.unwrap().unwrap();
        assert!(p.is_admin());
        assert!(!logs_in(&d, "admin", "wrong-password").await);
        assert!(!logs_in(&d, "nobody", "whatever-pass").await);
        d.create_user("alice", "alice-password", false, "a@example.com")
            .await
            .unwrap();
        assert!(matches!(
            d.create_user("alice", "alice-password", false, "").await,
            Err(DirectoryError::Exists(_))
        ));
        assert!(matches!(
            d.create_user("bob", "short", false, "").await,
            Err(DirectoryError::Invalid(_))
        ));
        assert!(matches!(
            d.create_user("bad:name", "long-enough", false, "").await,
            Err(DirectoryError::Invalid(_))
        ));
        d.update_user("alice", Some("new-password"), None)
            .await
            .unwrap();
        assert!(!logs_in(&d, "alice", "alice-password").await);
        assert!(logs_in(&d, "alice", "new-password").await);
    }

    /// Sessions and cached logins are tied to this version: every change
    /// of the account must change it, a re-created account included.
    #[tokio::test]
    async fn account_versions_change_with_the_account() {
        let d = dir();
        d.create_user("alice", "alice-password", false, "")
            .await
            .unwrap();
        let mut seen = vec![d.account_version("alice").await.unwrap().unwrap()];
        let (record, version) = d.user_versioned("alice").await.unwrap().unwrap();
        assert_eq!((record.name.as_str(), version), ("alice", seen[0]));
        d.update_user("alice", Some("new-password"), None)
            .await
            .unwrap();
        seen.push(d.account_version("alice").await.unwrap().unwrap());
        d.update_user("alice", None, Some(true)).await.unwrap();
        seen.push(d.account_version("alice").await.unwrap().unwrap());
        d.delete_user("alice").await.unwrap();
        assert_eq!(d.account_version("alice").await.unwrap(), None);
        assert!(d.user_versioned("alice").await.unwrap().is_none());
        d.create_user("alice", "alice-password", false, "")
            .await
            .unwrap();
        let recreated = d.account_version("alice").await.unwrap().unwrap();
        assert!(!seen.contains(&recreated), "{recreated} in {seen:?}");
        seen.push(recreated);
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "a version came back: {seen:?}");
    }

    #[tokio::test]
    async fn members_and_robots() {
        let d = dir();
        d.create_user("alice", "alice-password", false, "")
            .await
            .unwrap();
        d.create_project("team", false).await.unwrap();
        assert!(d.create_project("Bad", false).await.is_err());
        d.set_member("team", "user", "alice", Role::Developer)
            .await
            .unwrap();
        d.set_member("team", "group", "devs", Role::Maintainer)
            .await
            .unwrap();
        let alice = Principal::User {
            name: "alice".into(),
            admin: false,
            groups: vec!["devs".into()],
        };
        assert_eq!(
            d.role_of(&alice, "team").await.unwrap(),
            Some(Role::Maintainer)
        );
        assert_eq!(d.members("team").await.unwrap().len(), 2);

        let perms = vec![RobotPermission {
            project: "team".into(),
            actions: vec![Action::Pull],
        }];
        let (robot, secret) = d
            .create_robot(Some("team"), "ci", perms.clone(), None, "")
            .await
            .unwrap();
        assert_eq!(robot.name, "robot$team+ci");
        assert!(logs_in(&d, "robot$team+ci", &secret).await);
        assert!(!logs_in(&d, "robot$team+ci", "nope").await);
        let (_, s2) = d
            .create_robot(Some("team"), "old", perms, Some(1), "")
            .await
            .unwrap();
        assert!(!logs_in(&d, "robot$team+old", &s2).await, "expired");
        d.revoke_robot("robot$team+ci").await.unwrap();
        assert!(!logs_in(&d, "robot$team+ci", &secret).await, "revoked");
    }
}
