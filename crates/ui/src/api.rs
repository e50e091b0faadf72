//! Runs a management endpoint in-process for the viewer: routed by the
//! same table as `/api/v1` ([`mgmt::find`]) and handled by the same
//! handler, so a change made from a page meets exactly the API's
//! permission checks, validation, domain calls and audit records. A guest
//! who forges a form gets the API's 403.

use super::{Result, UiError, Viewer};
use axum::http::StatusCode;
use berth_mgmt::{common::Ctx, Found};
use bytes::Bytes;
use serde_json::Value;

/// Calls `method path?query` with a JSON `body` as the viewer; the JSON
/// answer (`Null` for none).
pub async fn call(
    viewer: &Viewer,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> Result<Value> {
    let (route, params) = match berth_mgmt::find(method, path) {
        Found::Route(r, params) => (r, params),
        Found::WrongMethod(_) | Found::NotFound => {
            return Err(UiError::Status(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the UI asked for an unknown endpoint {method} {path}"),
            ))
        }
    };
    let ctx = Ctx {
        state: viewer.state.clone(),
        caller: viewer.caller.clone(),
        params,
        query: query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
    };
    let resp = berth_mgmt::run(route, &ctx).await?;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|e| UiError::Status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    if status.is_success() {
        Ok(value)
    } else {
        let message = value["errors"][0]["message"]
            .as_str()
            .unwrap_or("the request failed")
            .to_owned();
        Err(UiError::Status(status, message))
    }
}

/// `/api/v1/projects/{project}/repositories/{repository}` for a full
/// repository name, with the inner name's slashes encoded so that the
/// name stays one parameter whatever it ends with.
pub fn repository_path(repo: &berth_oci::RepoName) -> String {
    let project = repo.project();
    let inner = repo
        .as_str()
        .strip_prefix(project)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or("_");
    format!(
        "/api/v1/projects/{}/repositories/{}",
        super::encode(project),
        super::encode(inner)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths() {
        let p = |s| repository_path(&berth_oci::RepoName::parse(s).unwrap());
        assert_eq!(p("p/app"), "/api/v1/projects/p/repositories/app");
        assert_eq!(p("p/a/tags"), "/api/v1/projects/p/repositories/a%2Ftags");
        assert_eq!(p("p"), "/api/v1/projects/p/repositories/_");
    }
}
