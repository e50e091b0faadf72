//! The auth crate's layout in `Kv`: every key it reads or writes, in one
//! place (as `berth_core::keys` is for the registry domain).
//!
//! ```text
//! user:<name>                          UserRecord        (directory)
//! project:<name>                       ProjectRecord     (directory)
//! member:<project>@<user|group>:<n>    MemberRecord      (directory)
//! robot:<full name>                    RobotRecord       (directory)
//! authkey:<kid>                        KeyRecord         (token signing keys)
//! authkey-active                       <kid>             (the key that signs)
//! audit:<inverted ns, 20 digits>-<id>  AuditEvent        (newest first)
//! uisession:<sha256 of the id, hex>    SessionRecord     (web UI sessions)
//! ```
//!
//! `@` cannot occur in project names, so a scan of `member:<project>@`
//! never sees the members of another project. The failed-login limiter
//! keeps nothing in `Kv` (it counts per node, in memory).

pub const USER_PREFIX: &str = "user:";
pub const PROJECT_PREFIX: &str = "project:";
pub const ROBOT_PREFIX: &str = "robot:";
pub const AUDIT_PREFIX: &str = "audit:";
pub const SESSION_PREFIX: &str = "uisession:";
/// Names the signing key in use.
pub const ACTIVE_SIGNING_KEY: &str = "authkey-active";

pub fn user(name: &str) -> String {
    format!("{USER_PREFIX}{name}")
}

pub fn project(name: &str) -> String {
    format!("{PROJECT_PREFIX}{name}")
}

/// A member of `project`: `kind` "user" or "group".
pub fn member(project: &str, kind: &str, name: &str) -> String {
    format!("member:{project}@{kind}:{name}")
}

/// Every member of `project`.
pub fn member_prefix(project: &str) -> String {
    format!("member:{project}@")
}

/// A robot, by its full name (`robot$...`).
pub fn robot(full_name: &str) -> String {
    format!("{ROBOT_PREFIX}{full_name}")
}

/// A token signing key, by its id.
pub fn signing_key(kid: &str) -> String {
    format!("authkey:{kid}")
}

/// An audit event: `inverted` nanoseconds (so that an ascending scan
/// returns the newest first) and a random `id` against collisions.
pub fn audit(inverted: u64, id: &str) -> String {
    format!("{AUDIT_PREFIX}{inverted:020}-{id}")
}

/// The audit key that an opaque audit cursor stands for.
pub fn audit_at(cursor: &str) -> String {
    format!("{AUDIT_PREFIX}{cursor}")
}

/// A web UI session, by the hash of its id (never the id itself).
pub fn session(id_sha256: &str) -> String {
    format!("{SESSION_PREFIX}{id_sha256}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_layout() {
        assert_eq!(user("alice"), "user:alice");
        assert_eq!(project("p"), "project:p");
        assert_eq!(member("p", "group", "devs"), "member:p@group:devs");
        assert!(member("p", "user", "a").starts_with(&member_prefix("p")));
        assert_eq!(robot("robot$p+ci"), "robot:robot$p+ci");
        assert_eq!(signing_key("ab12"), "authkey:ab12");
        assert_eq!(audit(42, "xy"), "audit:00000000000000000042-xy");
        assert_eq!(audit_at("00000000000000000042-xy"), audit(42, "xy"));
        assert_eq!(session("beef"), "uisession:beef");
    }
}
