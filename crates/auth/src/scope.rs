//! Token scopes of the Docker registry token specification:
//! `repository:<name>:<action>[,<action>...]` and `registry:catalog:*`.

use crate::model::{Action, Actions};
use berth_oci::RepoName;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Repository { name: RepoName, actions: Actions },
    Catalog,
}

impl Scope {
    /// Parses one scope; `None` for anything malformed or unknown, which the
    /// token service then simply does not grant.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        match kind {
            "repository" | "repository(plugin)" => {
                let name = RepoName::parse(name)?;
                let mut set = Actions::NONE;
                for a in actions.split(',') {
                    match a {
                        "*" => set = Actions::ALL,
                        other => set = set.with(Action::parse(other)?),
                    }
                }
                Some(Scope::Repository { name, actions: set })
            }
            "registry" if name == "catalog" => Some(Scope::Catalog),
            _ => None,
        }
    }

    /// Splits the `scope` parameter(s): several may be given, each possibly
    /// space-separated (the OAuth2 form).
    pub fn parse_all<'a>(params: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        params
            .into_iter()
            .flat_map(|p| p.split(' '))
            .filter(|s| !s.is_empty())
            .filter_map(Scope::parse)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scopes() {
        assert_eq!(
            Scope::parse("repository:a/b/c:pull,push"),
            Some(Scope::Repository {
                name: RepoName::parse("a/b/c").unwrap(),
                actions: Actions {
                    pull: true,
                    push: true,
                    delete: false
                }
            })
        );
        assert_eq!(Scope::parse("registry:catalog:*"), Some(Scope::Catalog));
        assert!(matches!(
            Scope::parse("repository:a:*"),
            Some(Scope::Repository {
                actions: Actions::ALL,
                ..
            })
        ));
        assert_eq!(Scope::parse("repository:a:fly"), None);
        assert_eq!(Scope::parse("repository:A:pull"), None);
        assert_eq!(Scope::parse("nonsense"), None);
        assert_eq!(
            Scope::parse_all(["repository:a:pull repository:b:push", "registry:catalog:*"]).len(),
            3
        );
    }
}
