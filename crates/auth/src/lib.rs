//! Who is asking, and what they may do. Identities (local users with argon2id
//! passwords, robot accounts, an external directory such as LDAP), projects
//! and their members, signed access tokens (ES256 JWT, keys kept in `Kv` so
//! any node verifies any token), and the one function that decides access:
//! [`rbac::permitted`].
//!
//! Everything is stored through the `Kv` port of berth-core, under the keys
//! of [`keys`]; nothing is held only in process memory except caches and the
//! failed-login limiter. The HTTP crates never see the `Kv`: they reach the
//! records through this crate's types ([`Directory`], including its web UI
//! [`sessions::Sessions`], the token service, the audit log).

pub mod audit;
pub mod directory;
pub mod keys;
pub mod ldap;
pub mod login;
pub mod model;
pub mod password;
pub mod ratelimit;
pub mod rbac;
pub mod scope;
pub mod secret;
pub mod sessions;
pub mod token;

pub use directory::Directory;
pub use model::{Action, Actions, Principal, Role};
