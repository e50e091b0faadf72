//! Users, projects, members and robot accounts, stored in `Kv`, and
//! password authentication against them (and an external directory such as
//! LDAP when one is configured).
//!
//! ```text
//! user:<name>                        UserRecord
//! project:<name>                     ProjectRecord
//! member:<project>@<user|group>:<n>  MemberRecord
//! robot:<full name>                  RobotRecord
//! ```

use crate::model::{
    MemberRecord, Principal, ProjectRecord, RobotPermission, RobotRecord, Role, UserRecord,
};
use crate::{password, secret};
use async_trait::async_trait;
use berth_core::kv::{Kv, KvError, Txn};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Kv(#[from] KvError),
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

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
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

#[derive(Clone)]
pub struct Directory {
    kv: Arc<dyn Kv>,
    external: Option<Arc<dyn ExternalDirectory>>,
    /// LDAP group -> (project, role) grants from configuration.
    group_roles: Arc<Vec<(String, String, Role)>>,
}

impl Directory {
    pub fn new(kv: Arc<dyn Kv>) -> Self {
        Directory {
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

    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DirectoryError> {
        match self.kv.get(key).await? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v.value)
                .map(Some)
                .map_err(|e| DirectoryError::Internal(format!("corrupt record {key}: {e}"))),
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
                out.push(
                    serde_json::from_slice(&v.value).map_err(|e| {
                        DirectoryError::Internal(format!("corrupt record {k}: {e}"))
                    })?,
                );
            }
            if !full {
                return Ok(out);
            }
        }
    }

    async fn create<T: serde::Serialize>(
        &self,
        key: &str,
        what: &str,
        value: &T,
    ) -> Result<(), DirectoryError> {
        if self
            .kv
            .commit(Txn::new().expect(key, None).put(key, encode(value)))
            .await?
        {
            Ok(())
        } else {
            Err(DirectoryError::Exists(what.to_owned()))
        }
    }

    /// Read-modify-write of one record, retried until no concurrent write
    /// intervenes.
    async fn modify<T: DeserializeOwned + serde::Serialize>(
        &self,
        key: &str,
        what: &str,
        change: impl Fn(&mut T),
    ) -> Result<T, DirectoryError> {
        loop {
            let Some(seen) = self.kv.get(key).await? else {
                return Err(DirectoryError::NotFound(what.to_owned()));
            };
            let mut record: T = serde_json::from_slice(&seen.value)
                .map_err(|e| DirectoryError::Internal(format!("corrupt record {key}: {e}")))?;
            change(&mut record);
            let txn = Txn::new()
                .expect(key, Some(&seen))
                .put(key, encode(&record));
            if self.kv.commit(txn).await? {
                return Ok(record);
            }
        }
    }

    async fn remove(&self, key: &str, what: &str) -> Result<(), DirectoryError> {
        let Some(seen) = self.kv.get(key).await? else {
            return Err(DirectoryError::NotFound(what.to_owned()));
        };
        self.kv
            .commit(Txn::new().expect(key, Some(&seen)).delete(key))
            .await?;
        Ok(())
    }

    // ---- users

    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, DirectoryError> {
        self.read(&format!("user:{name}")).await
    }

    /// A user's record with its version (see [`Directory::account_version`]),
    /// read together, so that what is checked is what was read.
    pub async fn user_versioned(
        &self,
        name: &str,
    ) -> Result<Option<(UserRecord, u64)>, DirectoryError> {
        let key = format!("user:{name}");
        let Some(v) = self.kv.get(&key).await? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&v.value)
            .map_err(|e| DirectoryError::Internal(format!("corrupt record {key}: {e}")))?;
        Ok(Some((record, v.version)))
    }

    pub async fn users(&self) -> Result<Vec<UserRecord>, DirectoryError> {
        self.list("user:").await
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
        if pass.len() < 8 {
            return Err(DirectoryError::Invalid(
                "password must have at least 8 characters".into(),
            ));
        }
        let record = UserRecord {
            name: name.to_owned(),
            password_hash: password::hash(pass).map_err(DirectoryError::Internal)?,
            admin,
            email: email.to_owned(),
            source: "local".into(),
            created: now(),
        };
        self.create(&format!("user:{name}"), &format!("user {name}"), &record)
            .await?;
        Ok(record)
    }

    pub async fn update_user(
        &self,
        name: &str,
        pass: Option<&str>,
        admin: Option<bool>,
    ) -> Result<UserRecord, DirectoryError> {
        if pass.is_some_and(|p| p.len() < 8) {
            return Err(DirectoryError::Invalid(
                "password must have at least 8 characters".into(),
            ));
        }
        let hash = pass
            .map(password::hash)
            .transpose()
            .map_err(DirectoryError::Internal)?;
        self.modify(
            &format!("user:{name}"),
            &format!("user {name}"),
            |u: &mut UserRecord| {
                if let Some(h) = &hash {
                    u.password_hash = h.clone();
                }
                if let Some(a) = admin {
                    u.admin = a;
                }
            },
        )
        .await
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), DirectoryError> {
        self.remove(&format!("user:{name}"), &format!("user {name}"))
            .await
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
        self.read(&format!("project:{name}")).await
    }

    pub async fn projects(&self) -> Result<Vec<ProjectRecord>, DirectoryError> {
        self.list("project:").await
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
            created: now(),
        };
        self.create(
            &format!("project:{name}"),
            &format!("project {name}"),
            &record,
        )
        .await?;
        Ok(record)
    }

    pub async fn set_project_public(
        &self,
        name: &str,
        public: bool,
    ) -> Result<ProjectRecord, DirectoryError> {
        self.modify(
            &format!("project:{name}"),
            &format!("project {name}"),
            |p: &mut ProjectRecord| p.public = public,
        )
        .await
    }

    pub async fn delete_project(&self, name: &str) -> Result<(), DirectoryError> {
        self.remove(&format!("project:{name}"), &format!("project {name}"))
            .await
    }

    // ---- members

    fn member_key(project: &str, kind: &str, name: &str) -> String {
        format!("member:{project}@{kind}:{name}")
    }

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
            .put(&Self::member_key(project, kind, name), encode(&record))
            .await?;
        Ok(record)
    }

    pub async fn remove_member(
        &self,
        project: &str,
        kind: &str,
        name: &str,
    ) -> Result<(), DirectoryError> {
        self.remove(
            &Self::member_key(project, kind, name),
            &format!("member {name}"),
        )
        .await
    }

    pub async fn members(&self, project: &str) -> Result<Vec<MemberRecord>, DirectoryError> {
        self.list(&format!("member:{project}@")).await
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
            .read::<MemberRecord>(&Self::member_key(project, "user", name))
            .await?
            .map(|m| m.role);
        for g in groups {
            if let Some(m) = self
                .read::<MemberRecord>(&Self::member_key(project, "group", g))
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
                format!("robot${p}+{name}")
            }
            None => format!("robot${name}"),
        };
        let secret = secret::generate();
        let record = RobotRecord {
            name: full.clone(),
            secret_sha256: secret::sha256_hex(&secret),
            permissions,
            expires_at,
            description: description.to_owned(),
            created: now(),
        };
        self.create(&format!("robot:{full}"), &full, &record)
            .await?;
        Ok((record, secret))
    }

    pub async fn robots(&self) -> Result<Vec<RobotRecord>, DirectoryError> {
        self.list("robot:").await
    }

    pub async fn robot(&self, full_name: &str) -> Result<Option<RobotRecord>, DirectoryError> {
        self.read(&format!("robot:{full_name}")).await
    }

    pub async fn revoke_robot(&self, full_name: &str) -> Result<(), DirectoryError> {
        self.remove(&format!("robot:{full_name}"), full_name).await
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
        if name.starts_with("robot$") {
            let Some(v) = self.kv.get(&format!("robot:{name}")).await? else {
                return Ok(None);
            };
            let robot: RobotRecord = serde_json::from_slice(&v.value)
                .map_err(|e| DirectoryError::Internal(format!("corrupt robot {name}: {e}")))?;
            let fresh = robot.expires_at.is_none_or(|e| e > now());
            return Ok(fresh.then_some(v.version));
        }
        Ok(self
            .kv
            .get(&format!("user:{name}"))
            .await?
            .map(|v| v.version))
    }

    /// Checks a name and password (or robot secret). `Ok(None)` for any
    /// failure, without saying which part was wrong.
    pub async fn authenticate(
        &self,
        name: &str,
        pass: &str,
    ) -> Result<Option<Principal>, DirectoryError> {
        if name.starts_with("robot$") {
            let Some(robot) = self.robot(name).await? else {
                return Ok(None);
            };
            let fresh = robot.expires_at.is_none_or(|e| e > now());
            if fresh && secret::matches(pass, &robot.secret_sha256) {
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
                            created: now(),
                        };
                        // First login of a directory user: remember them so
                        // that they can be made members of projects.
                        let key = format!("user:{}", identity.name);
                        self.kv
                            .commit(Txn::new().expect(&key, None).put(&key, encode(&record)))
                            .await?;
                        false
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
        assert!(d
            .authenticate("admin", "wrong-password")
            .await
            .unwrap()
            .is_none());
        assert!(d
            .authenticate("nobody", "whatever-pass")
            .await
            .unwrap()
            .is_none());
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
        assert!(d
            .authenticate("alice", "alice-password")
            .await
            .unwrap()
            .is_none());
        assert!(d
            .authenticate("alice", "new-password")
            .await
            .unwrap()
            .is_some());
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
        assert!(d
            .authenticate("robot$team+ci", &secret)
            .await
            .unwrap()
            .is_some());
        assert!(d
            .authenticate("robot$team+ci", "nope")
            .await
            .unwrap()
            .is_none());
        let (_, s2) = d
            .create_robot(Some("team"), "old", perms, Some(1), "")
            .await
            .unwrap();
        assert!(
            d.authenticate("robot$team+old", &s2)
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        d.revoke_robot("robot$team+ci").await.unwrap();
        assert!(
            d.authenticate("robot$team+ci", &secret)
                .await
                .unwrap()
                .is_none(),
            "revoked"
        );
    }
}
