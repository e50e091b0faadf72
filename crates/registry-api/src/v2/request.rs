//! A `/v2` request parsed once: its endpoint and the query parameters berth
//! reads. The guard parses it, decides access on it, and hands this same
//! value to the handler in the request's extensions, so the parameters an
//! access decision was made on are the ones the handler acts on. Nothing
//! reads the raw query string again, and nothing rewrites the URI.
//!
//! Parameters are percent-decoded once (`%66rom` is `from`). A parameter
//! berth reads that is given twice is refused with 400: which of two values
//! counts is exactly the kind of choice a check and a use can make
//! differently.

use super::route::{self, Endpoint, RouteError};
use berth_oci::{Digest, ErrorCode, RepoName};
use std::collections::HashMap;

/// The query parameters berth reads, with the error code a repeated one
/// gets: the code the spec gives for a bad value of that parameter.
const KNOWN: &[(&str, ErrorCode)] = &[
    ("digest", ErrorCode::DigestInvalid),
    ("mount", ErrorCode::DigestInvalid),
    ("from", ErrorCode::NameInvalid),
    ("n", ErrorCode::Unsupported),
    ("last", ErrorCode::Unsupported),
    ("artifactType", ErrorCode::Unsupported),
    ("ns", ErrorCode::NameInvalid),
];

/// Decoded query parameters, each known one at most once.
pub type Params = HashMap<String, String>;

/// A cross-repository mount asked for by `?mount=<digest>&from=<repo>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub digest: Digest,
    pub from: RepoName,
}

/// Why a query cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub code: ErrorCode,
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct V2Request {
    pub endpoint: Result<Endpoint, RouteError>,
    pub params: Result<Params, QueryError>,
    /// The mount the handler may attempt. Set by [`V2Request::parse`] from
    /// the parameters; the guard clears it when the caller may not pull
    /// from the source, and the handler then starts a plain upload, as the
    /// spec allows for a mount a registry does not do.
    pub mount: Option<Mount>,
    /// The name the client asked for, when a transparent mirror serves
    /// the request from a proxy project under another (the guard's
    /// `mirror`).
    pub mirrored_from: Option<Mirrored>,
}

/// A request a transparent mirror serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrored {
    /// The upstream's name, as the client asked for it.
    pub name: RepoName,
    /// The registry the client mirrors: its `ns=`, else `docker.io`.
    pub registry: String,
    /// Whether the client named it with `ns=` (its token requests then
    /// carry it too, in the challenge's realm).
    pub by_ns: bool,
}

impl V2Request {
    /// `path` is the URI path; `query` its raw query string.
    pub fn parse(path: &str, query: Option<&str>) -> V2Request {
        let endpoint = route::parse(path.strip_prefix("/v2").unwrap_or_default());
        let params = parse_query(query.unwrap_or_default());
        let mount = match (&endpoint, &params) {
            (Ok(Endpoint::UploadStart(_)), Ok(p)) => mount_of(p),
            _ => None,
        };
        V2Request {
            endpoint,
            params,
            mount,
            mirrored_from: None,
        }
    }

    /// The repository a mount asks to read, valid or not: a token client
    /// must be challenged for pull on it.
    pub fn mount_source(&self) -> Option<&RepoName> {
        self.mount.as_ref().map(|m| &m.from)
    }
}

/// A mount needs both a valid digest and a valid source. Anything less is
/// no mount, and the upload starts plain, as before.
fn mount_of(params: &Params) -> Option<Mount> {
    let digest = params.get("mount")?.parse().ok()?;
    let from = RepoName::parse(params.get("from")?)?;
    Some(Mount { digest, from })
}

fn parse_query(query: &str) -> Result<Params, QueryError> {
    let mut params = Params::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let known = KNOWN.iter().find(|(k, _)| *k == key);
        if params.contains_key(key.as_ref()) {
            if let Some((name, code)) = known {
                return Err(QueryError {
                    code: *code,
                    detail: format!("query parameter {name:?} given more than once"),
                });
            }
            continue;
        }
        params.insert(key.into_owned(), value.into_owned());
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload_start(query: &str) -> V2Request {
        V2Request::parse("/v2/alpha/app/blobs/uploads/", Some(query))
    }

    #[test]
    fn a_repeated_parameter_is_refused_in_any_spelling() {
        let d = Digest::sha256_of(b"x");
        for query in [
            format!("mount={d}&from=alpha/app&from=beta/secret"),
            format!("mount={d}&from=alpha/app&%66rom=beta/secret"),
            format!("mount={d}&mount={d}&from=alpha/app"),
            format!("mount={d}&from=alpha/app&%6Dount={d}"),
            format!("digest={d}&digest={d}"),
            "n=1&n=2".to_owned(),
            "last=a&l%61st=b".to_owned(),
        ] {
            let r = upload_start(&query);
            assert!(r.params.is_err(), "{query}");
            assert_eq!(r.mount, None, "{query}");
        }
        let r = upload_start(&format!("mount={d}&from=alpha/app&from=beta/secret"));
        assert_eq!(r.params.unwrap_err().code, ErrorCode::NameInvalid);
    }

    #[test]
    fn parameters_are_decoded_once_and_unknown_repeats_ignored() {
        let d = Digest::sha256_of(b"x");
        let r = upload_start(&format!("%6Dount={d}&%66rom=beta%2Fsecret&x=1&x=2"));
        assert_eq!(
            r.mount,
            Some(Mount {
                digest: d,
                from: RepoName::parse("beta/secret").unwrap()
            })
        );
        assert_eq!(r.params.unwrap().get("x").map(String::as_str), Some("1"));
    }

    #[test]
    fn a_mount_is_only_a_mount_on_an_upload_start_with_valid_parts() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(upload_start("mount=sha256:zz&from=a/b").mount, None);
        assert_eq!(upload_start(&format!("mount={d}&from=A//b")).mount, None);
        assert_eq!(upload_start(&format!("mount={d}")).mount, None);
        let elsewhere = V2Request::parse("/v2/a/tags/list", Some(&format!("mount={d}&from=a/b")));
        assert_eq!(elsewhere.mount, None);
    }
}
