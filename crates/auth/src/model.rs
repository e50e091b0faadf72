//! Stored records of identities and projects, roles with Harbor's meanings,
//! and the actions a scope can grant.

use serde::{Deserialize, Serialize};

/// What a token scope or permission may allow on a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// A small set of actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    pub pull: bool,
    pub push: bool,
    pub delete: bool,
}

impl Actions {
    pub const NONE: Actions = Actions {
        pull: false,
        push: false,
        delete: false,
    };
    pub const ALL: Actions = Actions {
        pull: true,
        push: true,
        delete: true,
    };
    pub const PULL: Actions = Actions {
        pull: true,
        push: false,
        delete: false,
    };

    pub fn has(self, a: Action) -> bool {
        match a {
            Action::Pull => self.pull,
            Action::Push => self.push,
            Action::Delete => self.delete,
        }
    }

    pub fn with(mut self, a: Action) -> Actions {
        match a {
            Action::Pull => self.pull = true,
            Action::Push => self.push = true,
            Action::Delete => self.delete = true,
        }
        self
    }

    pub fn union(self, o: Actions) -> Actions {
        Actions {
            pull: self.pull || o.pull,
            push: self.push || o.push,
            delete: self.delete || o.delete,
        }
    }

    pub fn list(self) -> Vec<Action> {
        [Action::Pull, Action::Push, Action::Delete]
            .into_iter()
            .filter(|a| self.has(*a))
            .collect()
    }
}

/// Project roles, with Harbor's meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything in the project, including members and robots.
    ProjectAdmin,
    /// Push, pull, delete artifacts; no member management.
    Maintainer,
    /// Push and pull.
    Developer,
    /// Pull, and read the project.
    Guest,
    /// Pull only; cannot see members or the audit log.
    LimitedGuest,
}

impl Role {
    pub fn registry_actions(self) -> Actions {
        match self {
            Role::ProjectAdmin | Role::Maintainer => Actions::ALL,
            Role::Developer => Actions {
                pull: true,
                push: true,
                delete: false,
            },
            Role::Guest | Role::LimitedGuest => Actions::PULL,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "project_admin",
            Role::Maintainer => "maintainer",
            Role::Developer => "developer",
            Role::Guest => "guest",
            Role::LimitedGuest => "limited_guest",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    /// argon2id PHC string; empty for users of an external directory.
    #[serde(default)]
    pub password_hash: String,
    pub admin: bool,
    #[serde(default)]
    pub email: String,
    /// "local" or "ldap".
    pub source: String,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub name: String,
    pub public: bool,
    pub created: u64,
}

/// A member of a project: a user, or a directory group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberRecord {
    pub project: String,
    /// "user" or "group".
    pub kind: String,
    pub name: String,
    pub role: Role,
}

/// One project a robot may act on, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotPermission {
    pub project: String,
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RobotRecord {
    /// Full name: `robot$<project>+<name>` or `robot$<name>`.
    pub name: String,
    /// SHA-256 of the secret, hex. The secret is random and long, so a
    /// fast hash compared in constant time is enough.
    pub secret_sha256: String,
    pub permissions: Vec<RobotPermission>,
    /// Unix seconds; none = never.
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub description: String,
    pub created: u64,
}

/// Every robot's name starts with this; no user's can (user names
/// refuse `$`).
pub const ROBOT_NAME_PREFIX: &str = "robot$";

/// A robot's full name: `robot$<project>+<short>` for a robot of a
/// project, `robot$<short>` for a system robot.
pub fn robot_name(project: Option<&str>, short: &str) -> String {
    match project {
        Some(p) => format!("{}{short}", project_robots_prefix(p)),
        None => format!("{ROBOT_NAME_PREFIX}{short}"),
    }
}

/// What the full names of `project`'s robots start with.
pub fn project_robots_prefix(project: &str) -> String {
    format!("{ROBOT_NAME_PREFIX}{project}+")
}

/// The project of a project robot's full name; `None` for a system robot
/// (or a name that is no robot's).
pub fn robot_project(full_name: &str) -> Option<&str> {
    full_name
        .strip_prefix(ROBOT_NAME_PREFIX)
        .and_then(|rest| rest.split_once('+'))
        .map(|(project, _)| project)
}

impl RobotRecord {
    /// Whether the robot may still log in at `now` (Unix seconds).
    pub fn live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User {
        name: String,
        admin: bool,
        /// Directory groups (LDAP), for group memberships.
        groups: Vec<String>,
    },
    Robot {
        name: String,
        permissions: Vec<RobotPermission>,
    },
}

impl Principal {
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User { name, .. } | Principal::Robot { name, .. } => name,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::User { admin: true, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_names() {
        assert_eq!(robot_name(Some("p"), "ci"), "robot$p+ci");
        assert_eq!(robot_name(None, "ci"), "robot$ci");
        assert!(robot_name(Some("p"), "ci").starts_with(&project_robots_prefix("p")));
        assert_eq!(robot_project("robot$p+ci"), Some("p"));
        assert_eq!(robot_project("robot$ci"), None);
        assert_eq!(robot_project("alice"), None);
    }
}
