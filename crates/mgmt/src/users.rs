//! Users: listed, created, changed and deleted by system administrators;
//! every user may read themself and change their own password (with the
//! old one). Also `/systeminfo`, the one other endpoint about the system.

use super::common::{
    self, created, no_content, ok, page_of, rfc3339, tolerate_missing, Body, Code, Ctx, Error,
    Input,
};
use berth_auth::model::{Principal, UserRecord};
use serde::Deserialize;
use serde_json::{json, Value};

/// A new user: the body of `POST /api/v1/users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    #[serde(alias = "username")]
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub email: String,
    #[serde(default, alias = "sysadmin_flag")]
    pub admin: bool,
}

/// A change to a user: the body of `PUT /api/v1/users/{name}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default, alias = "new_password")]
    pub password: Option<String>,
    /// Required when callers change their own password.
    #[serde(default)]
    pub old_password: Option<String>,
    #[serde(default, alias = "sysadmin_flag")]
    pub admin: Option<bool>,
}

pub fn view(u: &UserRecord) -> Value {
    json!({
        "name": u.name,
        "email": u.email,
        "admin": u.admin,
        "source": u.source,
        "creation_time": rfc3339(u.created),
    })
}

pub async fn system_info(ctx: &Ctx) -> common::Result {
    ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        // Every /v2 and /api/v1 request is authenticated; there is no
        // switch to turn that off.
        "auth_enabled": true,
        "auth_token_service": "/service/token",
        "admin_creates_projects": ctx.state.auth.admin_creates_projects,
    }))
}

pub async fn list(ctx: &Ctx) -> common::Result {
    ctx.require_admin()?;
    page_of(ctx, ctx.directory().users().await?, |u| &u.name, view)
}

pub async fn create(ctx: &Ctx) -> common::Result {
    created(view(&create_user(ctx, Body(ctx)).await?))
}

/// Creates a user; system administrators only.
pub async fn create_user(ctx: &Ctx, new: impl Input<UserCreate>) -> Result<UserRecord, Error> {
    ctx.require_admin()?;
    let new = new.read()?;
    let record = ctx
        .directory()
        .create_user(&new.name, &new.password, new.admin, &new.email)
        .await?;
    ctx.audit("create_user", &format!("user:{}", record.name));
    Ok(record)
}

pub async fn current(ctx: &Ctx) -> common::Result {
    match ctx.principal() {
        Principal::Anonymous => Err(ctx.denied()),
        Principal::User { name, .. } => match ctx.directory().user(name).await? {
            Some(u) => ok(view(&u)),
            None => Err(Error::unauthorized("the account no longer exists")),
        },
        Principal::Robot { name, permissions } => ok(json!({
            "name": name,
            "robot": true,
            "permissions": permissions,
        })),
    }
}

/// Whether the caller is the user `name` (robots never are).
fn is_self(ctx: &Ctx, name: &str) -> bool {
    matches!(ctx.principal(), Principal::User { name: me, .. } if me == name)
}

async fn existing(ctx: &Ctx, name: &str) -> Result<UserRecord, Error> {
    let user = ctx.directory().user(name).await?;
    user.ok_or_else(|| Error::not_found(format!("user {name} not found")))
}

pub async fn get(ctx: &Ctx) -> common::Result {
    let name = ctx.param("name");
    if !ctx.is_admin() && !is_self(ctx, name) {
        return Err(ctx.denied());
    }
    ok(view(&existing(ctx, name).await?))
}

pub async fn update(ctx: &Ctx) -> common::Result {
    ok(view(&update_user(ctx, ctx.param("name"), Body(ctx)).await?))
}

/// Changes a user's password or administrator flag: administrators any
/// user's, every user their own password (with the old one).
pub async fn update_user(
    ctx: &Ctx,
    name: &str,
    change: impl Input<UserChange>,
) -> Result<UserRecord, Error> {
    let own = is_self(ctx, name);
    if !ctx.is_admin() && !own {
        return Err(ctx.denied());
    }
    let change = change.read()?;
    let user = existing(ctx, name).await?;
    if let Some(admin) = change.admin {
        if !ctx.is_admin() {
            return Err(ctx.denied());
        }
        if own && !admin {
            // Nobody else may be left to undo it.
            return Err(Error::bad_request(
                "you cannot remove your own administrator rights",
            ));
        }
    }
    if change.password.is_some() {
        if user.source != "local" {
            return Err(Error::bad_request(format!(
                "the password of {name} is managed by its {} directory",
                user.source
            )));
        }
        if own {
            // Even an administrator confirms their own old password: a
            // stolen token must not be enough to take the account over.
            // Checked through `Auth::login`, so guesses are rate-limited.
            let Some(old) = change.old_password.as_deref() else {
                return Err(Error::bad_request("old_password is required"));
            };
            let confirmed = ctx.state.auth.login(name, old, &ctx.caller.address).await?;
            if confirmed.is_none() {
                ctx.audit("login_failed", name);
                return Err(Error::new(Code::Forbidden, "the old password is wrong"));
            }
        }
    }
    let record = ctx
        .directory()
        .update_user(name, change.password.as_deref(), change.admin)
        .await?;
    let what = match (change.password.is_some(), change.admin) {
        (true, Some(_)) => "password,admin",
        (true, None) => "password",
        (false, Some(_)) => "admin",
        (false, None) => "nothing",
    };
    ctx.audit("update_user", &format!("user:{name} ({what})"));
    Ok(record)
}

pub async fn delete(ctx: &Ctx) -> common::Result {
    delete_user(ctx, ctx.param("name")).await?;
    no_content()
}

/// Deletes a user and its memberships; administrators only, never
/// themselves.
pub async fn delete_user(ctx: &Ctx, name: &str) -> Result<(), Error> {
    ctx.require_admin()?;
    if is_self(ctx, name) {
        return Err(Error::bad_request("you cannot delete yourself"));
    }
    existing(ctx, name).await?;
    let directory = ctx.directory();
    // Memberships go first: a user created later under the same name must
    // not inherit the roles of this one.
    for project in directory.projects().await? {
        tolerate_missing(directory.remove_member(&project.name, "user", name).await)?;
    }
    directory.delete_user(name).await?;
    ctx.audit("delete_user", &format!("user:{name}"));
    Ok(())
}
