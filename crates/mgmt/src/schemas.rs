//! The JSON schemas of the OpenAPI document (`components.schemas`): the
//! bodies the handlers accept and return.

use serde_json::{json, Value};

fn string() -> Value {
    json!({"type": "string"})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

pub fn schemas() -> Value {
    let role = json!({"type": "string", "enum": ["project_admin", "maintainer", "developer", "guest", "limited_guest"]});
    let action = json!({"type": "string", "enum": ["pull", "push", "delete"]});
    let robot_props = json!({
        "name": {"type": "string", "example": "robot$library+ci"},
        "level": {"type": "string", "enum": ["system", "project"]},
        "project": {"type": "string", "nullable": true},
        "description": string(),
        "permissions": {"type": "array", "items": {"$ref": "#/components/schemas/RobotPermission"}},
        "expires_at": {"type": "integer", "nullable": true, "description": "Unix seconds; null = never"},
        "expiration_time": {"type": "string", "format": "date-time", "nullable": true},
        "expired": {"type": "boolean"},
        "creation_time": time(),
    });
    let mut created_props = robot_props.clone();
    created_props["secret"] =
        json!({"type": "string", "description": "the robot's password; returned only here"});
    let mut all = json!({
        "Errors": object(&["errors"], json!({
            "errors": {"type": "array", "items": object(&["code", "message"], json!({
                "code": string(), "message": string(), "detail": string(),
            }))},
        })),
        "SystemInfo": object(&["version", "auth_enabled"], json!({
            "version": string(),
            "auth_enabled": {"type": "boolean"},
            "auth_token_service": string(),
            "admin_creates_projects": {"type": "boolean"},
        })),
        "User": object(&["name"], json!({
            "name": string(),
            "email": string(),
            "admin": {"type": "boolean"},
            "source": {"type": "string", "enum": ["local", "ldap"]},
            "creation_time": time(),
            "robot": {"type": "boolean", "description": "only on /users/current for a robot"},
        })),
        "NewUser": object(&["name", "password"], json!({
            "name": string(),
            "password": {"type": "string", "minLength": 8},
            "email": string(),
            "admin": {"type": "boolean", "default": false},
        })),
        "UserChange": object(&[], json!({
            "password": {"type": "string", "minLength": 8},
            "old_password": {"type": "string", "description": "required when changing one's own password"},
            "admin": {"type": "boolean"},
        })),
        "Project": object(&["name", "public"], json!({
            "name": string(),
            "public": {"type": "boolean"},
            "creation_time": time(),
            "repo_count": {"type": "integer"},
            "current_user_role": {"type": "string", "nullable": true},
        })),
        "NewProject": object(&["name"], json!({
            "name": string(),
            "public": {"type": "boolean", "default": false},
        })),
        "ProjectChange": object(&["public"], json!({"public": {"type": "boolean"}})),
        "Member": object(&["kind", "name", "role"], json!({
            "kind": {"type": "string", "enum": ["user", "group"]},
            "name": string(),
            "role": role,
        })),
        "NewMember": object(&["name", "role"], json!({
            "kind": {"type": "string", "enum": ["user", "group"], "default": "user"},
            "name": string(),
            "role": role,
        })),
        "MemberChange": object(&["role"], json!({"role": role})),
        "RobotPermission": object(&["project", "actions"], json!({
            "project": {"type": "string", "description": "a project, or `*` for all (system robots)"},
            "actions": {"type": "array", "items": action},
        })),
        "Robot": object(&["name", "permissions"], robot_props),
        "RobotCreated": object(&["name", "secret"], created_props),
        "NewRobot": object(&["name"], json!({
            "name": {"type": "string", "description": "short name: lowercase letters, digits, `-_.`"},
            "description": string(),
            "permissions": {"type": "array", "items": {"$ref": "#/components/schemas/RobotPermission"}, "description": "required for system robots; project robots default to pull on their project"},
            "actions": {"type": "array", "items": action, "description": "project robots: shorthand for permissions on their project"},
            "expires_at": {"type": "integer", "description": "Unix seconds"},
            "duration_days": {"type": "integer", "description": "days from now; -1 = never"},
        })),
        "Repository": object(&["name"], json!({
            "name": {"type": "string", "example": "library/ubuntu"},
            "project": string(),
            "creation_time": time(),
        })),
        "Tag": object(&["name", "digest"], json!({
            "name": string(),
            "digest": string(),
            "push_time": time(),
        })),
        "Artifact": object(&["digest", "media_type", "size"], json!({
            "digest": string(),
            "media_type": string(),
            "artifact_type": {"type": "string", "nullable": true},
            "size": {"type": "integer", "description": "the manifest plus the blobs it names directly"},
            "manifest_size": {"type": "integer"},
            "push_time": time(),
            "subject": {"type": "string", "nullable": true},
            "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}},
        })),
        "AuditEvent": object(&["time", "user", "operation", "resource", "address", "count"], json!({
            "time": time(),
            "timestamp": {"type": "integer", "description": "Unix seconds"},
            "user": string(),
            "operation": string(),
            "resource": string(),
            "address": string(),
            "count": {"type": "integer", "description": "How many identical events (same user, operation, resource and address) within half a second this record stands for; 1 for most"},
        })),
        "GcReport": object(&["id", "started", "duration_ms", "dry_run", "blobs_deleted", "manifests_deleted", "bytes_freed"], json!({
            "id": string(),
            "started": {"type": "integer", "description": "Unix seconds"},
            "duration_ms": {"type": "integer"},
            "dry_run": {"type": "boolean"},
            "grace_secs": {"type": "integer"},
            "trigger": {"type": "string", "description": "what started it and on which node"},
            "manifests_deleted": {"type": "integer"},
            "tags_kept": {"type": "integer"},
            "blob_links_deleted": {"type": "integer"},
            "blobs_deleted": {"type": "integer"},
            "bytes_freed": {"type": "integer"},
            "uploads_deleted": {"type": "integer"},
            "blobs_examined": {"type": "integer"},
            "repositories_skipped": {"type": "integer", "description": "pushed to during the run; collected next time"},
            "deleted": {"type": "array", "items": string(), "description": "what went or would go (at most 1000)"},
            "error": string(),
        })),
        "Quota": object(&["used_bytes"], json!({
            "limit_bytes": {"type": "integer", "nullable": true},
            "used_bytes": {"type": "integer"},
        })),
        "QuotaChange": object(&["limit_bytes"], json!({
            "limit_bytes": {"type": "integer", "nullable": true, "description": "bytes; null removes the quota"},
        })),
        "TagSelector": object(&["tags"], json!({
            "repositories": {"type": "string", "default": "**", "description": "repository names inside the project: `*` within a segment, `**` across, `?` one character"},
            "tags": {"type": "string", "description": "tag names, same syntax"},
        })),
        "Retention": object(&["rules"], json!({
            "rules": {"type": "array", "items": object(&[], json!({
                "repositories": {"type": "string", "default": "**"},
                "tags": {"type": "string", "default": "**"},
                "latest_pushed": {"type": "integer", "description": "keep the N most recently pushed tags of each repository"},
                "pushed_within_days": {"type": "integer", "description": "keep tags pushed within this many days"},
                "pulled_within_days": {"type": "integer", "description": "keep tags whose manifest was pulled within this many days"},
            }))},
        })),
        "RetentionReport": object(&["project", "dry_run", "deleted"], json!({
            "project": string(),
            "dry_run": {"type": "boolean"},
            "started": {"type": "integer"},
            "tags_examined": {"type": "integer"},
            "deleted": {"type": "array", "items": string(), "description": "`<repository>:<tag>`"},
        })),
        "GcHistory": object(&["runs"], json!({
            "running": {"type": "string", "nullable": true, "description": "holder of the GC lock"},
            "grace_period_secs": {"type": "integer"},
            "upload_expiry_secs": {"type": "integer"},
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/GcReport"}},
        })),
    });
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), replication()) {
        all.extend(more);
    }
    all
}

/// Replication's schemas (`/api/v1/replication/...`).
fn replication() -> Value {
    let status =
        json!({"type": "string", "enum": ["pending", "running", "succeeded", "failed", "stopped"]});
    let kind = json!({"type": "string", "enum": ["distribution", "harbor", "berth", "docker-hub"], "default": "distribution"});
    let tls = object(
        &[],
        json!({
            "insecure": {"type": "boolean", "default": false, "description": "accept any certificate"},
            "ca_pem": {"type": "string", "description": "trust only these CA certificates (PEM)"},
        }),
    );
    let execution = json!({
        "id": string(),
        "policy": string(),
        "trigger": {"type": "string", "enum": ["manual", "cron", "event"]},
        "status": status,
        "stop_requested": {"type": "boolean"},
        "tasks": {"type": "integer"},
        "started_ms": {"type": "integer"},
        "finished_ms": {"type": "integer"},
        "message": string(),
    });
    let mut detail = execution.clone();
    detail["counts"] = json!({"type": "object", "additionalProperties": {"type": "integer"}, "description": "tasks by status"});
    detail["bytes"] = json!({"type": "integer", "description": "blob bytes sent"});
    detail["task_list"] = json!({"type": "array", "items": object(&["seq", "op", "status"], json!({
        "seq": {"type": "integer"},
        "op": {"type": "string", "enum": ["copy", "delete_manifest", "delete_tags", "delete_repository"]},
        "repository": string(),
        "destination": string(),
        "digest": string(),
        "tags": {"type": "array", "items": string()},
        "status": status,
        "attempts": {"type": "integer"},
        "bytes": {"type": "integer"},
        "node": string(),
        "message": string(),
    }))});
    json!({
        "ReplicationEndpoint": object(&["name", "url", "kind", "has_secret"], json!({
            "name": string(), "url": string(), "kind": kind, "username": string(),
            "has_secret": {"type": "boolean"}, "tls": tls, "description": string(),
            "created_ms": {"type": "integer"},
        })),
        "NewReplicationEndpoint": object(&["name", "url"], json!({
            "name": string(),
            "url": {"type": "string", "example": "https://registry.example.com"},
            "kind": kind, "username": string(),
            "secret": {"type": "string", "description": "password or token; sealed at rest, never returned"},
            "tls": tls, "description": string(),
        })),
        "ProxyChange": object(&["endpoint"], json!({
            "endpoint": {"type": "string", "description": "a replication endpoint's name"},
        })),
        "ProxyBinding": object(&["project", "endpoint"], json!({
            "project": string(), "endpoint": string(),
        })),
        "EndpointTest": object(&["ok"], json!({
            "ok": {"type": "boolean"}, "auth": string(), "api_version": string(), "message": string(),
        })),
        "ReplicationPolicy": object(&["name", "direction", "endpoint"], json!({
            "name": string(),
            "direction": {"type": "string", "enum": ["push", "pull"]},
            "endpoint": string(),
            "filters": object(&[], json!({
                "repository": {"type": "string", "default": "**"},
                "tag": {"type": "string", "default": "**"},
                "kinds": {"type": "array", "items": {"type": "string", "enum": ["image", "index", "artifact"]}},
            })),
            "namespace": object(&["mode"], json!({
                "mode": {"type": "string", "enum": ["keep", "replace", "flatten"]},
                "with": {"type": "string", "description": "replace: the new first segment"},
                "levels": {"type": "integer", "description": "flatten: leading segments dropped"},
                "prefix": {"type": "string", "description": "flatten: put in front"},
            })),
            "triggers": object(&[], json!({
                "cron": {"type": "string", "description": "five fields, UTC"},
                "event": {"type": "boolean", "description": "on push (and delete, with replicate_deletes); push policies"},
            })),
            "replicate_deletes": {"type": "boolean", "default": false},
            "overwrite": {"type": "boolean", "default": true},
            "bandwidth_kib": {"type": "integer", "default": 0, "description": "KiB/s per blob stream, 0 = unlimited"},
            "concurrency": {"type": "integer", "default": 1},
            "enabled": {"type": "boolean", "default": true},
            "description": string(),
        })),
        "ReplicationExecution": object(&["id", "policy", "status"], execution),
        "ReplicationExecutionDetail": object(&["id", "policy", "status", "task_list"], detail),
    })
}
