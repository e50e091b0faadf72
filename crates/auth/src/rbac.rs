//! The one place that decides what a principal may do in a project. The
//! registry endpoints, the token service and the management API all ask it.

use crate::model::{Action, Actions, Principal, ProjectRecord, Role};

/// Facts about the project a request touches, looked up by the caller.
pub struct ProjectFacts<'a> {
    pub name: &'a str,
    /// `None` when the project does not exist.
    pub project: Option<&'a ProjectRecord>,
    /// The principal's best role in it, from user or group membership.
    pub role: Option<Role>,
    /// Whether a system administrator's push creates a missing project.
    pub admin_creates_projects: bool,
}

pub fn permitted(principal: &Principal, facts: &ProjectFacts<'_>) -> Actions {
    let public_pull = match facts.project {
        Some(p) if p.public => Actions::PULL,
        _ => Actions::NONE,
    };
    match principal {
        Principal::Anonymous => public_pull,
        Principal::User { admin: true, .. } => {
            if facts.project.is_some() || facts.admin_creates_projects {
                Actions::ALL
            } else {
                Actions::PULL.with(Action::Delete)
            }
        }
        Principal::User { .. } => {
            if facts.project.is_none() {
                return Actions::NONE;
            }
            facts
                .role
                .map(Role::registry_actions)
                .unwrap_or(Actions::NONE)
                .union(public_pull)
        }
        Principal::Robot { permissions, .. } => {
            if facts.project.is_none() {
                return Actions::NONE;
            }
            let granted = permissions
                .iter()
                .filter(|p| p.project == facts.name || p.project == "*")
                .flat_map(|p| p.actions.iter().copied())
                .fold(Actions::NONE, Actions::with);
            granted.union(public_pull)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RobotPermission;

    fn project(public: bool) -> ProjectRecord {
        ProjectRecord {
            name: "p".into(),
            public,
            created: 0,
        }
    }

    fn facts<'a>(p: Option<&'a ProjectRecord>, role: Option<Role>) -> ProjectFacts<'a> {
        ProjectFacts {
            name: "p",
            project: p,
            role,
            admin_creates_projects: true,
        }
    }

    fn user(admin: bool) -> Principal {
        Principal::User {
            name: "u".into(),
            admin,
            groups: vec![],
        }
    }

    #[test]
    fn decisions() {
        let private = project(false);
        let public = project(true);
        assert_eq!(
            permitted(&Principal::Anonymous, &facts(Some(&private), None)),
            Actions::NONE
        );
        assert_eq!(
            permitted(&Principal::Anonymous, &facts(Some(&public), None)),
            Actions::PULL
        );
        assert_eq!(
            permitted(&Principal::Anonymous, &facts(None, None)),
            Actions::NONE
        );
        assert_eq!(permitted(&user(true), &facts(None, None)), Actions::ALL);
        assert_eq!(permitted(&user(false), &facts(None, None)), Actions::NONE);
        assert_eq!(
            permitted(&user(false), &facts(Some(&private), None)),
            Actions::NONE
        );
        assert_eq!(
            permitted(&user(false), &facts(Some(&public), None)),
            Actions::PULL
        );
        let dev = permitted(&user(false), &facts(Some(&private), Some(Role::Developer)));
        assert!(dev.pull && dev.push && !dev.delete);
        assert_eq!(
            permitted(&user(false), &facts(Some(&private), Some(Role::Maintainer))),
            Actions::ALL
        );
        assert_eq!(
            permitted(
                &user(false),
                &facts(Some(&private), Some(Role::LimitedGuest))
            ),
            Actions::PULL
        );
        let robot = Principal::Robot {
            name: "robot$p+ci".into(),
            permissions: vec![RobotPermission {
                project: "p".into(),
                actions: vec![Action::Push],
            }],
        };
        let r = permitted(&robot, &facts(Some(&private), None));
        assert!(r.push && !r.pull && !r.delete);
        let mut other = facts(Some(&private), None);
        other.name = "q";
        assert_eq!(permitted(&robot, &other), Actions::NONE);
        let mut no_create = facts(None, None);
        no_create.admin_creates_projects = false;
        assert!(!permitted(&user(true), &no_create).push);
    }
}
