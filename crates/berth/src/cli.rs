//! `berth user|project|robot ...`: thin wrappers over the management API
//! of a running berth. They talk HTTP, never to the data directory, whose
//! metadata file the server holds locked.
//!
//! Credentials come from flags or the environment, never from a prompt, so
//! that scripts can run them; new passwords come from standard input or
//! `BERTH_NEW_PASSWORD`, so that they never appear in a process list.

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::Read;

/// Where the server is and who is asking.
#[derive(Args, Debug)]
pub struct Connection {
    /// Base URL of the berth server: http://, or https:// when it
    /// terminates TLS (see --ca-file).
    #[arg(
        long,
        env = "BERTH_URL",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    url: String,
    /// User (or robot) to authenticate as.
    #[arg(long, env = "BERTH_USERNAME", default_value = "admin", global = true)]
    username: String,
    /// Password of --username.
    #[arg(long, env = "BERTH_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,
    /// PEM file of the CA that signed the server's certificate, for an
    /// https:// URL with a private CA; the system's CAs otherwise.
    #[arg(long, env = "BERTH_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user. The password is read from standard input
    /// (--password-stdin) or from BERTH_NEW_PASSWORD.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        email: String,
        /// Make the user a system administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a password (your own when NAME is omitted; then the old one
    /// is --password). The new one is read from standard input
    /// (--password-stdin) or from BERTH_NEW_PASSWORD.
    Passwd {
        name: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Only names containing this.
        #[arg(long)]
        q: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// Create a project (private unless --public).
    Create {
        name: String,
        #[arg(long)]
        public: bool,
    },
    /// List the projects you can see.
    List {
        #[arg(long)]
        q: Option<String>,
    },
    /// Make a project a proxy cache of a replication endpoint (pulls go
    /// through to it, pushes are refused), or move it to another.
    ProxySet { name: String, endpoint: String },
    /// Show a proxy-cache project's upstream.
    ProxyShow { name: String },
    /// Make a proxy-cache project an ordinary project again (what it
    /// cached stays).
    ProxyUnset { name: String },
}

#[derive(Subcommand, Debug)]
pub enum RobotCommand {
    /// Create a robot and print its secret (shown only this once).
    Create {
        /// Short name; the robot is `robot$<project>+<name>` with --project,
        /// else the system robot `robot$<name>`.
        name: String,
        #[arg(long)]
        project: Option<String>,
        /// PROJECT:ACTIONS, e.g. `library:pull,push` (repeatable). A project
        /// robot defaults to pull on its project.
        #[arg(long = "permission", value_name = "PROJECT:ACTIONS")]
        permissions: Vec<String>,
        /// Expire after this many days (default: never).
        #[arg(long)]
        duration_days: Option<i64>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List robots: a project's with --project, else the system robots.
    List {
        #[arg(long)]
        project: Option<String>,
    },
    /// Revoke a robot (full name, or short name with --project).
    Revoke {
        name: String,
        #[arg(long)]
        project: Option<String>,
    },
}

pub fn user(conn: Connection, cmd: UserCommand) -> Result<(), String> {
    let api = Api::new(conn)?;
    run(async {
        match cmd {
            UserCommand::Add {
                name,
                email,
                admin,
                password_stdin,
            } => {
                let password = new_password(password_stdin)?;
                let body =
                    json!({"name": name, "password": password, "email": email, "admin": admin});
                let user = api.call(Method::POST, "/api/v1/users", Some(body)).await?;
                api.show_one(&user, &format!("created user {name}"));
            }
            UserCommand::Passwd {
                name,
                password_stdin,
            } => {
                let name = name.unwrap_or_else(|| api.conn.username.clone());
                let password = new_password(password_stdin)?;
                let mut body = json!({"password": password});
                if name == api.conn.username {
                    body["old_password"] = json!(api.password()?);
                }
                let path = format!("/api/v1/users/{}", encode(&name));
                let user = api.call(Method::PUT, &path, Some(body)).await?;
                api.show_one(&user, &format!("password of {name} changed"));
            }
            UserCommand::List { q } => {
                let users = api.list("/api/v1/users", q.as_deref()).await?;
                api.show(
                    &users,
                    &["NAME", "ADMIN", "SOURCE", "EMAIL", "CREATED"],
                    &["name", "admin", "source", "email", "creation_time"],
                );
            }
        }
        Ok(())
    })
}

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Only list what would be deleted.
    #[arg(long)]
    dry_run: bool,
    /// Show past runs instead of running one.
    #[arg(long, conflicts_with = "dry_run")]
    history: bool,
}

/// `berth gc`: runs a garbage collection on the server (or shows past runs).
pub fn gc(conn: Connection, args: GcArgs) -> Result<(), String> {
    let api = Api::new(conn)?;
    run(async {
        if args.history {
            let h = api.call(Method::GET, "/api/v1/gc", None).await?;
            if api.conn.json {
                println!("{h:#}");
                return Ok(());
            }
            let runs = h["runs"].as_array().cloned().unwrap_or_default();
            api.show(
                &runs,
                &[
                    "STARTED",
                    "TRIGGER",
                    "BLOBS",
                    "MANIFESTS",
                    "BYTES FREED",
                    "MS",
                ],
                &[
                    "started",
                    "trigger",
                    "blobs_deleted",
                    "manifests_deleted",
                    "bytes_freed",
                    "duration_ms",
                ],
            );
            return Ok(());
        }
        let path = format!("/api/v1/gc?dry_run={}", args.dry_run);
        let report = api.call(Method::POST, &path, None).await?;
        if api.conn.json {
            println!("{report:#}");
            return Ok(());
        }
        let n = |k: &str| report[k].as_u64().unwrap_or(0);
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for line in report["deleted"].as_array().into_iter().flatten() {
            println!("{verb} {}", line.as_str().unwrap_or_default());
        }
        println!(
            "{}{verb} {} blobs ({} bytes), {} manifests, {} blob links, {} uploads in {} ms",
            if args.dry_run { "dry run: " } else { "" },
            n("blobs_deleted"),
            n("bytes_freed"),
            n("manifests_deleted"),
            n("blob_links_deleted"),
            n("uploads_deleted"),
            n("duration_ms"),
        );
        if let Some(e) = report["error"].as_str() {
            return Err(format!("the run stopped early: {e}"));
        }
        Ok(())
    })
}

pub fn project(conn: Connection, cmd: ProjectCommand) -> Result<(), String> {
    let api = Api::new(conn)?;
    run(async {
        match cmd {
            ProjectCommand::Create { name, public } => {
                let body = json!({"name": name, "public": public});
                let p = api
                    .call(Method::POST, "/api/v1/projects", Some(body))
                    .await?;
                api.show_one(&p, &format!("created project {name}"));
            }
            ProjectCommand::ProxySet { name, endpoint } => {
                let path = proxy_path(&name);
                let body = json!({"endpoint": endpoint});
                let b = api.call(Method::PUT, &path, Some(body)).await?;
                api.show_one(&b, &format!("{name} is a proxy cache of {endpoint}"));
            }
            ProjectCommand::ProxyShow { name } => {
                let b = api.call(Method::GET, &proxy_path(&name), None).await?;
                api.show(&[b], &["PROJECT", "ENDPOINT"], &["project", "endpoint"]);
            }
            ProjectCommand::ProxyUnset { name } => {
                let done = format!("{name} is no longer a proxy cache");
                api.delete(&proxy_path(&name), &done).await?;
            }
            ProjectCommand::List { q } => {
                let projects = api.list("/api/v1/projects", q.as_deref()).await?;
                api.show(
                    &projects,
                    &["NAME", "PUBLIC", "REPOSITORIES", "ROLE", "CREATED"],
                    &[
                        "name",
                        "public",
                        "repo_count",
                        "current_user_role",
                        "creation_time",
                    ],
                );
            }
        }
        Ok(())
    })
}

fn proxy_path(project: &str) -> String {
    format!("/api/v1/projects/{}/proxy", encode(project))
}

pub fn robot(conn: Connection, cmd: RobotCommand) -> Result<(), String> {
    let api = Api::new(conn)?;
    run(async {
        match cmd {
            RobotCommand::Create {
                name,
                project,
                permissions,
                duration_days,
                description,
            } => {
                let mut body = json!({"name": name, "description": description});
                if !permissions.is_empty() {
                    body["permissions"] = parse_permissions(&permissions)?;
                }
                if let Some(days) = duration_days {
                    body["duration_days"] = json!(days);
                }
                let path = match &project {
                    Some(p) => format!("/api/v1/projects/{}/robots", encode(p)),
                    None => "/api/v1/robots".into(),
                };
                let robot = api.call(Method::POST, &path, Some(body)).await?;
                if api.conn.json {
                    println!("{robot:#}");
                } else {
                    println!("created {}", text(&robot["name"]));
                    println!("secret: {}", text(&robot["secret"]));
                    println!("(the secret is shown only now; store it safely)");
                }
            }
            RobotCommand::List { project } => {
                let path = match &project {
                    Some(p) => format!("/api/v1/projects/{}/robots", encode(p)),
                    None => "/api/v1/robots".into(),
                };
                let mut robots = api.list(&path, None).await?;
                for r in &mut robots {
                    r["perms"] = json!(describe_permissions(&r["permissions"]));
                }
                api.show(
                    &robots,
                    &["NAME", "PERMISSIONS", "EXPIRES", "EXPIRED", "DESCRIPTION"],
                    &["name", "perms", "expiration_time", "expired", "description"],
                );
            }
            RobotCommand::Revoke { name, project } => {
                let path = match &project {
                    Some(p) => format!("/api/v1/projects/{}/robots/{}", encode(p), encode(&name)),
                    None => format!("/api/v1/robots/{}", encode(&name)),
                };
                api.delete(&path, &format!("revoked {name}")).await?;
            }
        }
        Ok(())
    })
}

fn run(work: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?
        .block_on(work)
}

/// `PROJECT:ACTIONS` flags as the API's permission list.
fn parse_permissions(flags: &[String]) -> Result<Value, String> {
    let mut out = Vec::new();
    for f in flags {
        let (project, actions) = f
            .split_once(':')
            .ok_or_else(|| format!("--permission {f:?}: expected PROJECT:ACTIONS"))?;
        let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
        out.push(json!({"project": project, "actions": actions}));
    }
    Ok(Value::Array(out))
}

fn describe_permissions(perms: &Value) -> String {
    perms
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let actions: Vec<String> = p["actions"]
                        .as_array()
                        .map(|a| a.iter().map(text).collect())
                        .unwrap_or_default();
                    format!("{}:{}", text(&p["project"]), actions.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The new password: the first line of standard input, or
/// `BERTH_NEW_PASSWORD`.
fn new_password(from_stdin: bool) -> Result<String, String> {
    let password = if from_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| format!("reading the password from standard input: {e}"))?;
        input.lines().next().unwrap_or_default().to_owned()
    } else {
        std::env::var("BERTH_NEW_PASSWORD").map_err(|_| {
            "give the new password on standard input with --password-stdin, or in BERTH_NEW_PASSWORD"
                .to_owned()
        })?
    };
    if password.is_empty() {
        return Err("the new password is empty".into());
    }
    Ok(password)
}

/// What [`encode`] leaves as it is: ASCII letters and digits, and these.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'+')
    .remove(b'@');

/// Percent-encodes a path segment.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

/// A JSON value as table text.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Api {
    conn: Connection,
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(conn: Connection) -> Result<Api, String> {
        let tls = berth_net::TlsClient::with_ca(conn.ca_file.as_deref());
        let http = berth_net::client_builder(&tls, "--ca-file")?
            .build()
            .map_err(|e| format!("creating the HTTP client: {e}"))?;
        let base = conn.url.trim_end_matches('/').to_owned();
        Ok(Api { conn, http, base })
    }

    fn password(&self) -> Result<&str, String> {
        self.conn.password.as_deref().ok_or_else(|| {
            format!(
                "no password for {}: set BERTH_PASSWORD or give --password",
                self.conn.username
            )
        })
    }

    /// One request; the JSON body of a success (null for 204), or the
    /// API's error message.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        Ok(self.send(method, path, body).await?.1)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(reqwest::header::HeaderMap, Value), String> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.conn.username, Some(self.password()?));
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("{method} {url}: reading the response: {e}"))?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if !status.is_success() {
            let message = value["errors"][0]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            let hint = if status == StatusCode::UNAUTHORIZED {
                " (check --username and BERTH_PASSWORD)"
            } else {
                ""
            };
            return Err(format!("{status}: {message}{hint}"));
        }
        Ok((headers, value))
    }

    /// `DELETE path`, then `done` (but for --json).
    async fn delete(&self, path: &str, done: &str) -> Result<(), String> {
        self.call(Method::DELETE, path, None).await?;
        if !self.conn.json {
            println!("{done}");
        }
        Ok(())
    }

    /// The items of an unpaged list (none where the answer is no list).
    async fn items(&self, path: &str) -> Result<Vec<Value>, String> {
        let list = self.call(Method::GET, path, None).await?;
        Ok(match list {
            Value::Array(items) => items,
            _ => Vec::new(),
        })
    }

    /// Every item of a paged list.
    async fn list(&self, path: &str, q: Option<&str>) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        for page in 1.. {
            let mut url = format!("{path}?page={page}&page_size=100");
            if let Some(q) = q {
                url.push_str(&format!("&q={}", encode(q)));
            }
            let (headers, value) = self.send(Method::GET, &url, None).await?;
            let total: usize = headers
                .get("x-total-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let batch = match value {
                Value::Array(a) => a,
                _ => return Err(format!("GET {path}: expected a JSON array")),
            };
            let done = batch.is_empty();
            items.extend(batch);
            if done || items.len() >= total {
                break;
            }
        }
        Ok(items)
    }

    fn show_one(&self, value: &Value, message: &str) {
        if self.conn.json {
            println!("{value:#}");
        } else {
            println!("{message}");
        }
    }

    /// Items as an aligned table of `fields` under `headers`.
    fn show(&self, items: &[Value], headers: &[&str], fields: &[&str]) {
        if self.conn.json {
            println!("{:#}", Value::Array(items.to_vec()));
            return;
        }
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|item| fields.iter().map(|f| text(&item[*f])).collect())
            .collect();
        let widths: Vec<usize> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([h.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", padded.join("  ").trim_end());
        };
        line(headers.iter().map(|h| h.to_string()).collect());
        for row in rows {
            line(row);
        }
    }
}

/// `berth replication ...`: endpoints, policies, runs and executions.
#[derive(Subcommand, Debug)]
pub enum ReplicationCommand {
    /// Remote registries.
    Endpoints {
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// What to copy, which way, where to, when.
    Policies {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Run a policy now; with --wait, until its execution ends.
    Run {
        policy: String,
        #[arg(long)]
        wait: bool,
    },
    /// Executions and their tasks.
    Executions {
        #[command(subcommand)]
        command: ExecutionCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    List,
    /// Add an endpoint. Its secret (password or token) is read from
    /// standard input (--secret-stdin) or BERTH_ENDPOINT_SECRET.
    Add {
        name: String,
        /// The registry's scheme://host[:port] (`--url` is berth's own).
        #[arg(long)]
        endpoint_url: String,
        /// distribution, harbor, berth or docker-hub.
        #[arg(long, default_value = "distribution")]
        kind: String,
        /// The user at the registry (`--username` is berth's own).
        #[arg(long)]
        endpoint_username: Option<String>,
        #[arg(long)]
        secret_stdin: bool,
        /// Accept any TLS certificate.
        #[arg(long)]
        insecure: bool,
        /// Trust only the CA certificates of this PEM file (`--ca-file` is
        /// berth's own).
        #[arg(long)]
        endpoint_ca_file: Option<std::path::PathBuf>,
    },
    Remove {
        name: String,
    },
    /// Ping the endpoint with its credentials.
    Test {
        name: String,
    },
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    List,
    Show {
        name: String,
    },
    /// Add a policy (the body of POST /api/v1/replication/policies is
    /// also accepted whole with --file).
    Add {
        name: String,
        /// push (berth to the endpoint) or pull.
        #[arg(long, default_value = "push")]
        direction: String,
        #[arg(long)]
        endpoint: String,
        /// Repository glob.
        #[arg(long, default_value = "**")]
        repository: String,
        /// Tag glob.
        #[arg(long, default_value = "**")]
        tag: String,
        /// image, index or artifact (repeatable; all when absent).
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Replace the first path segment with this.
        #[arg(long, conflicts_with = "flatten")]
        replace_namespace: Option<String>,
        /// Drop this many leading path segments.
        #[arg(long)]
        flatten: Option<usize>,
        /// Five-field cron schedule (UTC).
        #[arg(long)]
        cron: Option<String>,
        /// Copy on every push (push policies).
        #[arg(long)]
        event: bool,
        #[arg(long)]
        replicate_deletes: bool,
        /// Leave destination tags that name another manifest.
        #[arg(long)]
        no_overwrite: bool,
        #[arg(long, default_value_t = 0)]
        bandwidth_kib: u64,
        #[arg(long, default_value_t = 1)]
        concurrency: u32,
        #[arg(long)]
        disabled: bool,
        /// A JSON file with the whole policy (other flags ignored).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    Remove {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ExecutionCommand {
    List {
        #[arg(long)]
        policy: Option<String>,
    },
    Show {
        id: String,
    },
    Stop {
        id: String,
    },
}

const REPLICATION: &str = "/api/v1/replication";

pub fn replication(conn: Connection, cmd: ReplicationCommand) -> Result<(), String> {
    let api = Api::new(conn)?;
    run(async {
        match cmd {
            ReplicationCommand::Endpoints { command } => endpoint_command(&api, command).await,
            ReplicationCommand::Policies { command } => policy_command(&api, command).await,
            ReplicationCommand::Run { policy, wait } => {
                let path = format!("{REPLICATION}/policies/{}/executions", encode(&policy));
                let e = api.call(Method::POST, &path, None).await?;
                let id = text(&e["id"]);
                if !wait {
                    api.show_one(&e, &format!("started execution {id}"));
                    return Ok(());
                }
                let path = format!("{REPLICATION}/executions/{}", encode(&id));
                loop {
                    let d = api.call(Method::GET, &path, None).await?;
                    let status = text(&d["status"]);
                    if !matches!(status.as_str(), "running" | "pending") {
                        api.show_one(&d, &format!("execution {id}: {status} {}", d["counts"]));
                        return if status == "succeeded" {
                            Ok(())
                        } else {
                            Err(format!("execution {id} {status}"))
                        };
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            ReplicationCommand::Executions { command } => match command {
                ExecutionCommand::List { policy } => {
                    let path = match policy {
                        Some(p) => format!("{REPLICATION}/executions?policy={}", encode(&p)),
                        None => format!("{REPLICATION}/executions"),
                    };
                    api.show(
                        &api.items(&path).await?,
                        &["ID", "POLICY", "TRIGGER", "STATUS", "TASKS", "MESSAGE"],
                        &["id", "policy", "trigger", "status", "tasks", "message"],
                    );
                    Ok(())
                }
                ExecutionCommand::Show { id } => {
                    let path = format!("{REPLICATION}/executions/{}", encode(&id));
                    let d = api.call(Method::GET, &path, None).await?;
                    if !api.conn.json {
                        println!(
                            "execution {id}: {} ({} bytes) {}",
                            text(&d["status"]),
                            d["bytes"],
                            d["counts"]
                        );
                    }
                    api.show(
                        d["task_list"]
                            .as_array()
                            .map(Vec::as_slice)
                            .unwrap_or_default(),
                        &[
                            "SEQ",
                            "OP",
                            "REPOSITORY",
                            "DESTINATION",
                            "TAGS",
                            "STATUS",
                            "BYTES",
                            "MESSAGE",
                        ],
                        &[
                            "seq",
                            "op",
                            "repository",
                            "destination",
                            "tags",
                            "status",
                            "bytes",
                            "message",
                        ],
                    );
                    Ok(())
                }
                ExecutionCommand::Stop { id } => {
                    let path = format!("{REPLICATION}/executions/{}/stop", encode(&id));
                    let e = api.call(Method::POST, &path, None).await?;
                    api.show_one(&e, &format!("stopping execution {id}"));
                    Ok(())
                }
            },
        }
    })
}

async fn endpoint_command(api: &Api, command: EndpointCommand) -> Result<(), String> {
    match command {
        EndpointCommand::List => {
            api.show(
                &api.items(&format!("{REPLICATION}/endpoints")).await?,
                &["NAME", "URL", "KIND", "USERNAME", "SECRET"],
                &["name", "url", "kind", "username", "has_secret"],
            );
        }
        EndpointCommand::Add {
            name,
            endpoint_url: url,
            kind,
            endpoint_username: username,
            secret_stdin,
            insecure,
            endpoint_ca_file: ca_file,
        } => {
            let secret = if secret_stdin {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| format!("reading the secret: {e}"))?;
                Some(s.trim_end_matches(['\n', '\r']).to_owned())
            } else {
                std::env::var("BERTH_ENDPOINT_SECRET").ok()
            };
            let ca_pem = match ca_file {
                Some(p) => Some(
                    std::fs::read_to_string(&p)
                        .map_err(|e| format!("reading {}: {e}", p.display()))?,
                ),
                None => None,
            };
            let body = json!({
                "name": name, "url": url, "kind": kind, "username": username,
                "secret": secret, "tls": {"insecure": insecure, "ca_pem": ca_pem},
            });
            let e = api
                .call(
                    Method::POST,
                    &format!("{REPLICATION}/endpoints"),
                    Some(body),
                )
                .await?;
            api.show_one(&e, &format!("created endpoint {name}"));
        }
        EndpointCommand::Remove { name } => {
            let path = format!("{REPLICATION}/endpoints/{}", encode(&name));
            api.delete(&path, &format!("removed endpoint {name}"))
                .await?;
        }
        EndpointCommand::Test { name } => {
            let path = format!("{REPLICATION}/endpoints/{}/test", encode(&name));
            let r = api.call(Method::POST, &path, None).await?;
            if api.conn.json {
                println!("{r:#}");
            } else if r["ok"].as_bool() == Some(true) {
                println!("{name}: ok (auth {})", text(&r["auth"]));
            } else {
                return Err(format!("{name}: {}", text(&r["message"])));
            }
        }
    }
    Ok(())
}

async fn policy_command(api: &Api, command: PolicyCommand) -> Result<(), String> {
    match command {
        PolicyCommand::List => {
            let mut items = api.items(&format!("{REPLICATION}/policies")).await?;
            for p in &mut items {
                p["repo"] = p["filters"]["repository"].clone();
                p["cron"] = p["triggers"]["cron"].clone();
                p["on_push"] = p["triggers"]["event"].clone();
            }
            api.show(
                &items,
                &[
                    "NAME",
                    "DIRECTION",
                    "ENDPOINT",
                    "REPOSITORIES",
                    "CRON",
                    "ON PUSH",
                    "ENABLED",
                ],
                &[
                    "name",
                    "direction",
                    "endpoint",
                    "repo",
                    "cron",
                    "on_push",
                    "enabled",
                ],
            );
        }
        PolicyCommand::Show { name } => {
            let path = format!("{REPLICATION}/policies/{}", encode(&name));
            println!("{:#}", api.call(Method::GET, &path, None).await?);
        }
        PolicyCommand::Add {
            name,
            direction,
            endpoint,
            repository,
            tag,
            kinds,
            replace_namespace,
            flatten,
            cron,
            event,
            replicate_deletes,
            no_overwrite,
            bandwidth_kib,
            concurrency,
            disabled,
            file,
        } => {
            let body = match file {
                Some(f) => {
                    let text = std::fs::read_to_string(&f)
                        .map_err(|e| format!("reading {}: {e}", f.display()))?;
                    let mut v: Value =
                        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
                    v["name"] = json!(name);
                    v
                }
                None => {
                    let namespace = match (replace_namespace, flatten) {
                        (Some(with), _) => json!({"mode": "replace", "with": with}),
                        (None, Some(levels)) => json!({"mode": "flatten", "levels": levels}),
                        (None, None) => json!({"mode": "keep"}),
                    };
                    json!({
                        "name": name, "direction": direction, "endpoint": endpoint,
                        "filters": {"repository": repository, "tag": tag, "kinds": kinds},
                        "namespace": namespace,
                        "triggers": {"cron": cron, "event": event},
                        "replicate_deletes": replicate_deletes, "overwrite": !no_overwrite,
                        "bandwidth_kib": bandwidth_kib, "concurrency": concurrency,
                        "enabled": !disabled,
                    })
                }
            };
            let p = api
                .call(Method::POST, &format!("{REPLICATION}/policies"), Some(body))
                .await?;
            api.show_one(&p, &format!("created policy {name}"));
        }
        PolicyCommand::Remove { name } => {
            let path = format!("{REPLICATION}/policies/{}", encode(&name));
            api.delete(&path, &format!("removed policy {name}")).await?;
        }
    }
    Ok(())
}
