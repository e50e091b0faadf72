//! Authentication and authorization of HTTP requests. Credentials are a
//! Bearer token (issued by `/service/token`), Basic credentials sent
//! straight to `/v2`, or nothing (anonymous). Every decision goes through
//! `berth_auth::rbac::permitted`, or, for a token, through the access the
//! token service granted from that same function.

use crate::error::ApiError;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use berth_auth::directory::DirectoryError;
use berth_auth::login::{LoginError, Logins};
use berth_auth::model::{Action, Actions, Principal, ROBOT_NAME_PREFIX};
use berth_auth::rbac::{permitted, ProjectFacts};
use berth_auth::token::{Claims, TokenService};
use berth_auth::Directory;
use berth_core::CoreError;
use berth_oci::{ErrorCode, RepoName};

pub struct Auth {
    pub directory: Directory,
    pub tokens: TokenService,
    /// Name-and-password checks: throttled, recently verified ones remembered.
    logins: Logins,
    /// Token realm; derived from the request's Host when unset.
    pub realm: Option<String>,
    pub admin_creates_projects: bool,
    /// The scheme of a realm derived from the request's Host: "https" when
    /// berth terminates TLS itself.
    pub scheme: &'static str,
}

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// Present when the caller used a Bearer token: its grants are the
    /// caller's permissions for `/v2`.
    pub claims: Option<Claims>,
    pub address: String,
}

pub enum Credentials {
    None,
    Basic(String, String),
    Bearer(String),
}

/// The directory's failures in the registry protocol's terms, for what
/// [`Auth`] asks the directory: on `/v2` and `/service/token`, and when it
/// authenticates a caller of any surface. (The management API and the web
/// UI map the failures of their own directory operations to the
/// management table, `berth_mgmt::common`.) Reading who the caller is and
/// what it may do fails only with the store's faults: UNAVAILABLE (503)
/// or UNKNOWN (500). The one record written here is the project of an
/// administrator's first push ([`Auth::ensure_project`], a duplicate taken
/// as success), named by a repository name's first component: the other
/// kinds get the spec's codes for them, an invalid name NAME_INVALID, a
/// missing record NAME_UNKNOWN, a duplicate DENIED.
impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Exists(what) => {
                ApiError::detail(ErrorCode::Denied, format!("{what} already exists"))
            }
            DirectoryError::NotFound(what) => {
                ApiError::detail(ErrorCode::NameUnknown, format!("{what} not found"))
            }
            DirectoryError::Invalid(what) => {
                ApiError::detail(ErrorCode::NameInvalid, format!("invalid {what}"))
            }
            DirectoryError::Store(e) => ApiError(e.into()),
            DirectoryError::Internal(m) => ApiError(CoreError::internal(m)),
        }
    }
}

pub fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Credentials::None;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            return Credentials::Basic(user.to_owned(), pass.to_owned());
        }
        // Malformed Basic credentials are wrong credentials.
        return Credentials::Basic(String::new(), String::new());
    }
    Credentials::None
}

impl Auth {
    pub fn new(
        directory: Directory,
        tokens: TokenService,
        realm: Option<String>,
        admin_creates_projects: bool,
    ) -> Self {
        Auth {
            logins: Logins::new(directory.clone()),
            directory,
            tokens,
            realm,
            admin_creates_projects,
            scheme: "http",
        }
    }

    /// Checks a name and password (see `berth_auth::login`): `Err` with
    /// 429 while the failed-login limiter refuses; `Ok(None)` for wrong
    /// credentials.
    pub async fn login(
        &self,
        user: &str,
        pass: &str,
        address: &str,
    ) -> Result<Option<Principal>, ApiError> {
        match self.logins.login(user, pass, address).await {
            Ok(principal) => Ok(principal),
            Err(LoginError::Blocked) => Err(ApiError::detail(
                ErrorCode::TooManyRequests,
                "too many failed logins; try again later",
            )),
            Err(LoginError::Directory(e)) => Err(e.into()),
        }
    }

    /// Who is calling. Wrong credentials are an error (401), never a silent
    /// fall back to anonymous.
    pub async fn caller(&self, headers: &HeaderMap, address: &str) -> Result<Caller, AuthFailure> {
        match credentials(headers) {
            Credentials::None => Ok(Caller {
                principal: Principal::Anonymous,
                claims: None,
                address: address.to_owned(),
            }),
            Credentials::Basic(user, pass) => match self
                .login(&user, &pass, address)
                .await
                .map_err(AuthFailure::Error)?
            {
                Some(principal) => Ok(Caller {
                    principal,
                    claims: None,
                    address: address.to_owned(),
                }),
                None => Err(AuthFailure::Unauthenticated("invalid username or password")),
            },
            Credentials::Bearer(token) => match self.tokens.verify(&token).await {
                Ok(claims) => Ok(Caller {
                    principal: self
                        .principal_of(&claims.sub)
                        .await
                        .map_err(AuthFailure::Error)?,
                    claims: Some(claims),
                    address: address.to_owned(),
                }),
                Err(berth_auth::token::TokenError::Store(e)) => {
                    Err(AuthFailure::Error(ApiError(e.into())))
                }
                Err(e) => {
                    tracing::info!(address, error = %e, "rejected token");
                    Err(AuthFailure::Unauthenticated("invalid or expired token"))
                }
            },
        }
    }

    /// The principal a token was issued to, as it is now (a deleted user or
    /// revoked robot keeps only what the token itself grants).
    async fn principal_of(&self, sub: &str) -> Result<Principal, ApiError> {
        if sub.is_empty() {
            return Ok(Principal::Anonymous);
        }
        if sub.starts_with(ROBOT_NAME_PREFIX) {
            return Ok(match self.directory.robot(sub).await? {
                Some(r) => Principal::Robot {
                    name: r.name,
                    permissions: r.permissions,
                },
                None => Principal::Anonymous,
            });
        }
        Ok(match self.directory.user(sub).await? {
            Some(u) => Principal::User {
                name: u.name,
                admin: u.admin,
                groups: Vec::new(),
            },
            None => Principal::Anonymous,
        })
    }

    /// What `principal` may do in the project of `repo`.
    pub async fn permitted(
        &self,
        principal: &Principal,
        project: &str,
    ) -> Result<Actions, ApiError> {
        if principal.is_admin() {
            // Admins may do everything; only a missing project needs a look.
            let exists = self.directory.project(project).await?.is_some();
            return Ok(if exists || self.admin_creates_projects {
                Actions::ALL
            } else {
                Actions::PULL.with(Action::Delete)
            });
        }
        let record = self.directory.project(project).await?;
        let role = match (&record, principal) {
            (Some(_), Principal::User { .. }) => self.directory.role_of(principal, project).await?,
            _ => None,
        };
        Ok(permitted(
            principal,
            &ProjectFacts {
                name: project,
                project: record.as_ref(),
                role,
                admin_creates_projects: self.admin_creates_projects,
            },
        ))
    }

    /// Whether `caller` may do `action` on `repo`: by its token's grants, or
    /// by its identity.
    pub async fn allows(
        &self,
        caller: &Caller,
        repo: &RepoName,
        action: Action,
    ) -> Result<bool, ApiError> {
        match &caller.claims {
            Some(c) => Ok(c.allows("repository", repo.as_str(), action.as_str())),
            None => Ok(self
                .permitted(&caller.principal, repo.project())
                .await?
                .has(action)),
        }
    }

    /// Creates the project of `repo` when a system administrator pushes
    /// into a project that does not exist yet.
    pub async fn ensure_project(&self, caller: &Caller, repo: &RepoName) -> Result<(), ApiError> {
        if !caller.principal.is_admin() || !self.admin_creates_projects {
            return Ok(());
        }
        if self.directory.project(repo.project()).await?.is_none() {
            match self.directory.create_project(repo.project(), false).await {
                Ok(_) => tracing::info!(
                    project = repo.project(),
                    by = caller.principal.name(),
                    "project created by push"
                ),
                Err(DirectoryError::Exists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub fn realm(&self, headers: &HeaderMap) -> String {
        match &self.realm {
            Some(r) => r.clone(),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1:5000");
                let proto = headers
                    .get("x-forwarded-proto")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or(self.scheme);
                format!("{proto}://{host}/service/token")
            }
        }
    }

    /// A 401 with the Bearer challenge naming what the request needs; for
    /// a request a transparent mirror serves by `ns=`, the realm carries
    /// that `ns` (token clients keep a realm's query and add theirs).
    pub fn challenge(
        &self,
        headers: &HeaderMap,
        scope: Option<&str>,
        mirror: Option<&str>,
        insufficient: bool,
        detail: &str,
    ) -> Response {
        let mut realm = self.realm(headers);
        if let Some(ns) = mirror {
            // The token service grants a mirror's names for this mirror.
            let ns: String = form_urlencoded::byte_serialize(ns.as_bytes()).collect();
            realm = format!("{realm}?ns={ns}");
        }
        let mut value = format!(
            "Bearer realm=\"{realm}\",service=\"{}\"",
            self.tokens.service
        );
        if let Some(s) = scope {
            value.push_str(&format!(",scope=\"{s}\""));
        }
        if insufficient {
            value.push_str(",error=\"insufficient_scope\"");
        }
        let mut resp = ApiError::detail(ErrorCode::Unauthorized, detail).into_response();
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// Why a request could not be authenticated.
pub enum AuthFailure {
    /// Wrong credentials: answer 401 with a challenge.
    Unauthenticated(&'static str),
    Error(ApiError),
}
