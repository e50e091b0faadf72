//! Who calls the management API, and what they may do in a project.
//!
//! [`authenticate`] is the one middleware in front of `/api/v1`: it runs
//! `Auth::caller` (Basic through the rate-limited, cached `Auth::login`),
//! answers wrong credentials with a 401, and leaves the [`Caller`] in the
//! request's extensions. Bearer tokens from `/service/token` are refused
//! with a 401: they are registry tokens, scoped to repositories for
//! `/v2`; here they would carry their subject's every right. Registry
//! actions in a project come from `berth_auth::rbac::permitted`; the
//! management permissions that have no registry action (members, robots,
//! the audit log) are the small role table in [`ProjectAccess`].
//!
//! A project the caller cannot see answers exactly as a project that does
//! not exist ([`project_access`]), so that private project names do not
//! leak.

use super::common::{Ctx, Error};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_auth::model::{Action, Actions, Principal, ProjectRecord, Role};
use berth_auth::rbac::{permitted, ProjectFacts};
use berth_http::auth::{credentials, AuthFailure, Caller, Credentials};
use berth_http::time::now;
use berth_http::AppState;
use std::net::SocketAddr;

pub async fn authenticate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let address = peer.ip().to_string();
    if let Credentials::Bearer(_) = credentials(req.headers()) {
        // Not even verified: whatever its scope, a registry token is no
        // credential here (Harbor's API refuses them too). The web UI
        // calls the handlers in-process with its session's caller.
        return unauthorized(
            "registry tokens are for /v2 only; the management API takes Basic credentials",
        );
    }
    let caller = match state.caller(req.headers(), &address).await {
        Ok(caller) => caller,
        Err(AuthFailure::Unauthenticated(why)) => return unauthorized(why),
        Err(AuthFailure::Error(e)) => return e.into_response(),
    };
    let caller = match current(&state, caller).await {
        Ok(Some(caller)) => caller,
        Ok(None) => return unauthorized("the account no longer exists or has expired"),
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The caller as its account is now. `Auth::login` remembers verified
/// Basic credentials for a minute; a deleted user, a demoted administrator
/// or a revoked robot must not keep management rights for that long, so
/// the account is read again (one metadata read).
async fn current(state: &AppState, mut caller: Caller) -> Result<Option<Caller>, Error> {
    let directory = &state.auth.directory;
    match &mut caller.principal {
        Principal::Anonymous => {}
        Principal::User { name, admin, .. } => match directory.user(name).await? {
            Some(record) => *admin = record.admin,
            None => return Ok(None),
        },
        Principal::Robot { name, permissions } => match directory.robot(name).await? {
            Some(r) if r.live(now()) => *permissions = r.permissions,
            _ => return Ok(None),
        },
    }
    Ok(Some(caller))
}

fn unauthorized(why: &str) -> Response {
    let mut resp = Error::unauthorized(why).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"berth\""),
    );
    resp
}

/// Management permissions inside a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectPerm {
    /// See the project at all.
    Read,
    /// List its members (not limited guests).
    ListMembers,
    /// Add, change and remove members; create and revoke project robots;
    /// change the project's settings.
    Manage,
    /// Read the project's audit log (project admins and maintainers).
    ReadAudit,
    /// A registry action on the project's repositories.
    Registry(Action),
}

/// The caller's standing in one existing project.
pub struct ProjectAccess {
    pub project: ProjectRecord,
    /// The caller's best project role (users only).
    pub role: Option<Role>,
    /// What `rbac::permitted` grants the caller on the registry.
    pub actions: Actions,
    pub sysadmin: bool,
}

impl ProjectAccess {
    pub fn allows(&self, perm: ProjectPerm) -> bool {
        if self.sysadmin {
            return true;
        }
        // Roles are ordered from project admin (highest) to limited guest.
        let at_least = |r: Role| self.role.is_some_and(|mine| mine <= r);
        match perm {
            ProjectPerm::Read => self.role.is_some() || self.actions != Actions::NONE,
            ProjectPerm::ListMembers => at_least(Role::Guest),
            ProjectPerm::Manage => at_least(Role::ProjectAdmin),
            ProjectPerm::ReadAudit => at_least(Role::Maintainer),
            ProjectPerm::Registry(a) => self.actions.has(a),
        }
    }
}

/// The caller's standing in `name`, a project the caller may see; 404
/// when the project does not exist, and the very same 404 when the caller
/// may not see it (a private project of others, for anonymous callers
/// too), so that no answer tells a private project from a missing one.
/// Every `/api/v1/projects/{project}/...` route and every project page of
/// the UI starts here (through [`require`]).
pub async fn project_access(ctx: &Ctx, name: &str) -> Result<ProjectAccess, Error> {
    let missing = || Error::not_found(format!("project {name} not found"));
    let auth = &ctx.state.auth;
    let Some(project) = auth.directory.project(name).await? else {
        return Err(missing());
    };
    let access = access_to(ctx, project).await?;
    if !access.allows(ProjectPerm::Read) {
        return Err(missing());
    }
    Ok(access)
}

/// The caller's standing in a project already read.
pub async fn access_to(ctx: &Ctx, project: ProjectRecord) -> Result<ProjectAccess, Error> {
    let auth = &ctx.state.auth;
    let principal = ctx.principal();
    let role = auth.directory.role_of(principal, &project.name).await?;
    let actions = permitted(
        principal,
        &ProjectFacts {
            name: &project.name,
            project: Some(&project),
            role,
            admin_creates_projects: auth.admin_creates_projects,
        },
    );
    Ok(ProjectAccess {
        project,
        role,
        actions,
        sysadmin: principal.is_admin(),
    })
}

/// The caller's standing in `name`, refused unless it allows `perm`: 404
/// for a project the caller cannot see (as for a missing one), else 401
/// for an anonymous caller and 403 for others.
pub async fn require(ctx: &Ctx, name: &str, perm: ProjectPerm) -> Result<ProjectAccess, Error> {
    let access = project_access(ctx, name).await?;
    if access.allows(perm) {
        Ok(access)
    } else {
        Err(ctx.denied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(role: Option<Role>, actions: Actions) -> ProjectAccess {
        ProjectAccess {
            project: ProjectRecord {
                name: "p".into(),
                public: false,
                created: 0,
            },
            role,
            actions,
            sysadmin: false,
        }
    }

    #[test]
    fn role_table() {
        use ProjectPerm::*;
        let cases = [
            (Role::ProjectAdmin, [true, true, true, true]),
            (Role::Maintainer, [true, true, false, true]),
            (Role::Developer, [true, true, false, false]),
            (Role::Guest, [true, true, false, false]),
            (Role::LimitedGuest, [true, false, false, false]),
        ];
        for (role, expected) in cases {
            let a = access(Some(role), role.registry_actions());
            let got = [Read, ListMembers, Manage, ReadAudit].map(|p| a.allows(p));
            assert_eq!(got, expected, "{role:?}");
        }
        let public_reader = access(None, Actions::PULL);
        assert!(public_reader.allows(Read));
        assert!(!public_reader.allows(ListMembers));
        assert!(!access(None, Actions::NONE).allows(Read));
        let robot = access(None, Actions::NONE.with(Action::Push));
        assert!(robot.allows(Registry(Action::Push)) && !robot.allows(Registry(Action::Delete)));
    }
}
