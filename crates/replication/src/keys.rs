//! Every `Kv` key replication writes, all under the prefix `repl:`, which
//! no other key of berth uses (see `berth_core::keys`):
//!
//! ```text
//! repl:endpoint:<name>           Endpoint (secret sealed)
//! repl:policy:<name>             Policy
//! repl:exec:<id>                 Execution (id sorts by start time)
//! repl:task:<exec id>:<seq>      Task of an execution (seq: 6 digits)
//! repl:active:<exec id>          marker: the execution has unfinished tasks
//! repl:cron:<policy>             the minute (Unix) a cron trigger last fired
//! repl:origin:<repo>@<digest>    endpoint a pull brought this manifest from
//!                                (the loop guard of push policies)
//! ```

pub const PREFIX: &str = "repl:";
pub const ENDPOINT_PREFIX: &str = "repl:endpoint:";
pub const POLICY_PREFIX: &str = "repl:policy:";
pub const EXEC_PREFIX: &str = "repl:exec:";
pub const ACTIVE_PREFIX: &str = "repl:active:";

pub fn endpoint(name: &str) -> String {
    format!("{ENDPOINT_PREFIX}{name}")
}

pub fn policy(name: &str) -> String {
    format!("{POLICY_PREFIX}{name}")
}

pub fn execution(id: &str) -> String {
    format!("{EXEC_PREFIX}{id}")
}

pub fn task_prefix(exec: &str) -> String {
    format!("repl:task:{exec}:")
}

pub fn task(exec: &str, seq: u32) -> String {
    format!("repl:task:{exec}:{seq:06}")
}

pub fn active(exec: &str) -> String {
    format!("{ACTIVE_PREFIX}{exec}")
}

pub fn cron(policy: &str) -> String {
    format!("repl:cron:{policy}")
}

pub fn origin(repo: &str, digest: &str) -> String {
    format!("repl:origin:{repo}@{digest}")
}
