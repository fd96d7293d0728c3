//! The served `/openapi.json`: the document utoipa generates from the handlers, completed
//! with what every operation shares and the handlers' attributes do not say (docs/behaviour.md,
//! "The OpenAPI document"), and the 405 answer for methods the document does not declare.
//!
//! Completed here, once for all operations:
//! - unique `operationId`s (`<method>_<path>`; utoipa uses the handler's function name,
//!   and several resources have a `list`), needed by links;
//! - the error answers every operation of a kind can give, as `ErrorBody`: 401 and 403
//!   where a token is required, 400 where there is a parameter or a body, 404 where the
//!   path names an object, 409, 413, 415 and 422 where there is a body;
//! - the rules of the admin conventions on request bodies: object names match
//!   [`NAME_PATTERN`] (and are not UUIDs), strings carry no control characters but tab and
//!   newline;
//! - PUT bodies may omit the name (the URL names the object); PATCH bodies are JSON merge
//!   patches of the same fields, none required, optional ones also `null` (removed: back to
//!   the default), also as `application/merge-patch+json`;
//! - links from each create (201) to the read, update, replace and delete of the created
//!   object, so stateful testing can follow them.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};

use crate::admin::{ErrorBody, ErrorDetail};
use crate::error::{AdminError, Error};
use crate::vocab::limits::{MAX_AMOUNT_USD, MAX_PER_MINUTE};

/// Object names (`validate::name`): 1 to 63 lowercase ASCII letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit.
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";
/// A string without control characters other than tab and newline (`body::screen_strings`).
const PRINTABLE_PATTERN: &str = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$";
/// A UUID, which an object name may not be (URLs address objects by id or name).
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$";

/// A PUT's path parameter: an object name, or an id in the hyphenated form answers carry.
const NAME_OR_ID_PATTERN: &str = "^([a-z0-9][a-z0-9._-]{0,62}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$";
/// A route path prefix (`validate::route_path`): absolute, printable ASCII without spaces,
/// `?`, `#`, `%` or `\`, at most 256 characters.
const ROUTE_PATH_PATTERN: &str = "^/[!\"$&'()*+,./0-9:;<=>@A-Z\\[\\]^_`a-z{|}~-]{0,255}$";
/// Empty, `.` and `..` segments, which a route path may not have.
const DOT_SEGMENTS_PATTERN: &str = "//|/\\.\\.?(/|$)";
/// A URL segment of a provider option (`services::check_provider_options`).
const URL_SEGMENT_PATTERN: &str = "^[A-Za-z0-9_.-]{1,128}$";
/// A DNS label (`options.azure_instance`).
const DNS_LABEL_PATTERN: &str = "^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

/// A tag (`validate::tags`): 1 to 64 printable characters, no whitespace at either end.
const TAG_PATTERN: &str = "^[^\\s\\u0000-\\u001f\\u007f-\\u009f]([^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]{0,62}[^\\s\\u0000-\\u001f\\u007f-\\u009f])?$";
/// Printable text that is not blank (`validate::display_text`).
const NOT_BLANK_PATTERN: &str = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$";
/// A model alias (`validate::model_alias`).
const ALIAS_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$";
/// An HTTP header name (`validate::header_name`): a token.
const HEADER_NAME_PATTERN: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$";
/// `GET /usage`'s `group_by`.
const GROUP_BY_PATTERN: &str =
    "^((tenant|route|model|key|source)(,(tenant|route|model|key|source))*)?$";

/// The field rules of the admin API's validation that a schema can state, by component
/// schema and JSON pointer inside it (src/admin/validate.rs has the rules themselves).
fn field_rules() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "TenantInput",
            "/properties/display_name",
            json!({"maxLength": 200, "pattern": NOT_BLANK_PATTERN}),
        ),
        (
            "AdminInput",
            "/properties/password",
            json!({"minLength": 8, "maxLength": 1024}),
        ),
        (
            "Limits",
            "/properties/requests_per_minute",
            json!({"minimum": 1, "maximum": MAX_PER_MINUTE}),
        ),
        (
            "Limits",
            "/properties/tokens_per_minute",
            json!({"minimum": 1, "maximum": MAX_PER_MINUTE}),
        ),
        (
            "Budget",
            "/properties/amount_usd",
            json!({"exclusiveMinimum": 0, "maximum": MAX_AMOUNT_USD}),
        ),
        (
            "RouteInput",
            "/properties/max_request_body_size",
            json!({"minimum": 1, "maximum": 134_217_728}),
        ),
        (
            "RouteInput",
            "/properties/model_alias",
            json!({"pattern": ALIAS_PATTERN}),
        ),
        (
            "ModelOptions",
            "/properties/max_tokens",
            json!({"minimum": 1}),
        ),
        (
            "ModelOptions",
            "/properties/temperature",
            json!({"minimum": 0, "maximum": 5}),
        ),
        (
            "ModelOptions",
            "/properties/top_p",
            json!({"minimum": 0, "maximum": 1}),
        ),
        (
            "ModelOptions",
            "/properties/top_k",
            json!({"minimum": 0, "maximum": 500}),
        ),
        (
            "ModelOptions",
            "/properties/input_cost",
            json!({"exclusiveMinimum": 0, "maximum": 1_000_000}),
        ),
        (
            "ModelOptions",
            "/properties/output_cost",
            json!({"exclusiveMinimum": 0, "maximum": 1_000_000}),
        ),
        (
            "ModelConfig",
            "/properties/name",
            json!({"minLength": 1, "maxLength": 256}),
        ),
        (
            "RouteInput",
            "/properties/paths",
            json!({"uniqueItems": true}),
        ),
        (
            "RouteInput",
            "/properties/paths/items",
            json!({"pattern": ROUTE_PATH_PATTERN, "not": {"pattern": DOT_SEGMENTS_PATTERN}}),
        ),
        (
            "ServiceOptions",
            "/properties/azure_instance",
            json!({"pattern": DNS_LABEL_PATTERN}),
        ),
        (
            "ServiceOptions",
            "/properties/azure_deployment_id",
            json!({"pattern": URL_SEGMENT_PATTERN}),
        ),
        (
            "ServiceOptions",
            "/properties/azure_api_version",
            json!({"pattern": URL_SEGMENT_PATTERN}),
        ),
        (
            "ServiceOptions",
            "/properties/anthropic_version",
            json!({"pattern": URL_SEGMENT_PATTERN}),
        ),
        (
            "Timeouts",
            "/properties/connect_ms",
            json!({"minimum": 1, "maximum": 300_000}),
        ),
        (
            "Timeouts",
            "/properties/read_ms",
            json!({"minimum": 1, "maximum": 3_600_000}),
        ),
        (
            "Timeouts",
            "/properties/max_connections",
            json!({"minimum": 1, "maximum": 65_536}),
        ),
        (
            "Timeouts",
            "/properties/pool_wait_ms",
            json!({"minimum": 1, "maximum": 300_000}),
        ),
        (
            "Timeouts",
            "/properties/total_ms",
            json!({"minimum": 1, "maximum": 86_400_000}),
        ),
        // Policies are bound through /policies; a route's own list must stay empty.
        ("RouteInput", "/properties/policies", json!({"maxItems": 0})),
        (
            "CredentialInput",
            "/properties/header_name",
            json!({"pattern": HEADER_NAME_PATTERN}),
        ),
        (
            "CredentialInput",
            "/properties/header_value",
            json!({"minLength": 1, "maxLength": 8192}),
        ),
        (
            "CredentialInput",
            "/properties/param_name",
            json!({"minLength": 1}),
        ),
        (
            "CredentialInput",
            "/properties/param_value",
            json!({"minLength": 1}),
        ),
    ]
}

/// Applies [`field_rules`], the tag rule on every `tags`, and the string rules of
/// [`tighten`] on every schema a request body reaches; the admin password is required on
/// creation (a PUT or PATCH may leave it out, see [`complete_operation`]).
fn apply_rules(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    for (component, pointer, rule) in field_rules() {
        if let Some(Value::Object(target)) = schemas
            .get_mut(component)
            .and_then(|c| c.pointer_mut(pointer))
            && let Value::Object(rule) = rule
        {
            target.extend(rule);
        }
    }
    if let Some(required) = schemas
        .pointer_mut("/AdminInput/required")
        .and_then(Value::as_array_mut)
    {
        required.push(json!("password"));
    }
    cross_field_rules(doc);
    unshared_limits(doc);
    let roots: Vec<String> = request_schemas(doc).into_keys().collect();
    let reachable = reachable(doc, roots.clone());
    let schemas = &mut doc["components"]["schemas"];
    for name in &reachable {
        let top = roots.contains(name);
        if let Some(tags) = schemas
            .get_mut(name.as_str())
            .and_then(|c| c.pointer_mut("/properties/tags"))
        {
            tags["maxItems"] = json!(32);
            tags["items"] = json!({"type": "string", "minLength": 1, "maxLength": 64,
                                   "pattern": TAG_PATTERN});
        }
        if let Some(schema) = schemas.get_mut(name.as_str()) {
            tighten(schema, top);
        }
    }
}

/// The rules that tie fields of one body together (src/admin/admins.rs,
/// src/admin/credentials.rs) and the shape of an upstream URL (`validate::upstream_url`;
/// whether it may point at a private address depends on the configuration).
fn cross_field_rules(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    // `tenant` is required for, and only for, a tenant_admin ("absent or null" otherwise).
    if let Some(admin) = schemas.get_mut("AdminInput") {
        admin["if"] = json!({"properties": {"role": {"const": "tenant_admin"}},
                             "required": ["role"]});
        admin["then"] = json!({"properties": {"tenant": {"type": "string", "minLength": 1}},
                               "required": ["tenant"]});
        admin["else"] = json!({"properties": {"tenant": {"type": "null"}}});
    }
    // A header pair or a parameter triple, each all or none ("none": absent or null).
    if let Some(credential) = schemas.get_mut("CredentialInput") {
        let group = |fields: &[&str]| {
            let set: Map<String, Value> = fields
                .iter()
                .map(|f| (f.to_string(), json!({"not": {"type": "null"}})))
                .collect();
            let unset: Map<String, Value> = fields
                .iter()
                .map(|f| (f.to_string(), json!({"type": "null"})))
                .collect();
            (
                json!({"required": fields, "properties": set}),
                json!({"properties": unset}),
            )
        };
        let (header_set, header_unset) = group(&["header_name", "header_value"]);
        let (param_set, param_unset) = group(&["param_name", "param_value", "param_location"]);
        credential["allOf"] = json!([
            {"anyOf": [header_set.clone(), header_unset]},
            {"anyOf": [param_set.clone(), param_unset]},
            {"anyOf": [header_set, param_set]},
        ]);
    }
    if let Some(url) = schemas.pointer_mut("/ServiceInput/properties/upstream_url") {
        url["pattern"] = json!("^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$");
    }
}

/// Tenants' and keys' limits refuse `shared` (routes only): they refer to a copy of
/// `Limits` without it, `UnsharedLimits`.
fn unshared_limits(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let Some(mut unshared) = schemas.get("Limits").cloned() else {
        return;
    };
    if let Some(properties) = unshared["properties"].as_object_mut() {
        properties.remove("shared");
    }
    schemas["UnsharedLimits"] = unshared;
    for (component, pointer) in [
        ("TenantInput", "/properties/limits/oneOf/0/$ref"),
        ("ApiKeyInput", "/properties/limits/oneOf/0/$ref"),
        ("ApiKeyPatch", "/properties/limits/$ref"),
    ] {
        if let Some(reference) = schemas
            .get_mut(component)
            .and_then(|c| c.pointer_mut(pointer))
        {
            *reference = json!("#/components/schemas/UnsharedLimits");
        }
    }
}

/// The component schemas `roots` reach through `$ref`s, roots included.
fn reachable(doc: &Value, roots: Vec<String>) -> Vec<String> {
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(r)) => {
                            if let Some(name) = r.strip_prefix("#/components/schemas/") {
                                out.push(name.to_string());
                            }
                        }
                        _ => refs(inner, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
            _ => {}
        }
    }
    let mut seen: Vec<String> = Vec::new();
    let mut todo = roots;
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        refs(&doc["components"]["schemas"][name.as_str()], &mut todo);
        seen.push(name);
    }
    seen
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The generated document, completed (see the module documentation).
pub fn complete(api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = match serde_json::to_value(&api) {
        Ok(doc) => doc,
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document does not serialise; serving it uncompleted");
            return api;
        }
    };
    complete_value(&mut doc);
    // A completion that utoipa's types cannot read back would silently serve the bare
    // document (no 401s, no rules): said loudly, and a test checks the served one.
    match serde_json::from_value(doc) {
        Ok(completed) => completed,
        Err(e) => {
            tracing::error!(error = %e, "the completed OpenAPI document does not read back; serving it uncompleted");
            api
        }
    }
}

fn error_response(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

/// [`complete`] on the document as JSON.
pub fn complete_value(doc: &mut Value) {
    apply_rules(doc);
    if let Some(params) = doc
        .pointer_mut("/paths/~1usage/get/parameters")
        .and_then(Value::as_array_mut)
    {
        for param in params {
            match param["name"].as_str() {
                Some("group_by") => param["schema"]["pattern"] = json!(GROUP_BY_PATTERN),
                Some("tenant") => param["schema"]["pattern"] = json!(PRINTABLE_PATTERN),
                _ => {}
            }
        }
    }
    let body_schemas = request_schemas(doc);
    let inputs = inputs_by_path(doc);
    let mut derived: BTreeMap<String, Value> = BTreeMap::new();
    let paths: Vec<String> = doc["paths"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for path in &paths {
        for method in METHODS {
            let Some(op) = doc["paths"][path].get_mut(method) else {
                continue;
            };
            let input = inputs.get(path).map(String::as_str);
            complete_operation(op, method, path, input, &body_schemas, &mut derived);
        }
    }
    add_links(doc, &paths);
    let schemas = &mut doc["components"]["schemas"];
    for (name, schema) in derived {
        schemas[name] = schema;
    }
}

/// The component schemas used as request bodies (by name).
fn request_schemas(doc: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for ops in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for method in METHODS {
            let reference = ops[method]
                .pointer("/requestBody/content/application~1json/schema/$ref")
                .and_then(Value::as_str);
            if let Some(name) = reference.and_then(|r| r.strip_prefix("#/components/schemas/"))
                && let Some(schema) = doc["components"]["schemas"].get(name)
            {
                out.insert(name.to_string(), schema.clone());
            }
        }
    }
    out
}

/// The create/replace body schema of each object path: its PUT's, else the POST's of its
/// collection. A PATCH body is a merge patch of it.
fn inputs_by_path(doc: &Value) -> BTreeMap<String, String> {
    let body_ref = |path: &str, method: &str| {
        doc["paths"][path][method]
            .pointer("/requestBody/content/application~1json/schema/$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .map(str::to_string)
    };
    let mut out = BTreeMap::new();
    for path in doc["paths"].as_object().into_iter().flat_map(|p| p.keys()) {
        let collection = path.rsplit_once('/').map(|(c, _)| c).unwrap_or("");
        if let Some(name) = body_ref(path, "put").or_else(|| body_ref(collection, "post")) {
            out.insert(path.clone(), name);
        }
    }
    out
}

fn complete_operation(
    op: &mut Value,
    method: &str,
    path: &str,
    input: Option<&str>,
    body_schemas: &BTreeMap<String, Value>,
    derived: &mut BTreeMap<String, Value>,
) {
    let id: String = format!("{method}{path}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    op["operationId"] = json!(id);

    // `security: []` marks the public operations (login, health).
    let public = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(Map::is_empty)));
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let has_body = op.get("requestBody").is_some();
    let responses = op["responses"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut responses = responses;
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    };
    if !public {
        add(
            "401",
            "No valid token: missing, malformed, expired or revoked.",
        );
        add("403", "The token's role may not do this.");
    }
    if has_params || has_body {
        add(
            "400",
            "A parameter or the body breaks a rule; `fields` names each.",
        );
    }
    if path.contains('{') {
        add("404", "No such object (or not visible to the caller).");
    }
    if has_body {
        add(
            "409",
            "Conflicts with the stored state: a duplicate name or alias, or a field naming \
             an object that does not exist; `fields` names each such field.",
        );
        add(
            "422",
            "The body follows this document but a rule it cannot state refuses it: fields \
             valid each on their own whose combination is not allowed, a time that has \
             passed, a policy configuration that does not fit its type; `fields` names each.",
        );
        add("413", "The body is larger than the admin body limit.");
        add("415", "The body is not JSON.");
    }
    for (status, response) in responses.iter_mut() {
        if response.get("description").is_none_or(|d| d == "") {
            response["description"] = json!(default_description(status));
        }
    }
    op["responses"] = Value::Object(responses);

    // Path parameters naming an object: a PUT's is a name (which may create the object)
    // or the id of an existing one.
    if method == "put" {
        for param in op["parameters"].as_array_mut().into_iter().flatten() {
            if param["in"] == "path" {
                param["schema"] = json!({"type": "string", "pattern": NAME_OR_ID_PATTERN});
            }
        }
    }

    let own = op
        .pointer("/requestBody/content/application~1json/schema/$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .map(str::to_string);
    // A PATCH documented as a free-form object patches the path's input.
    let name = match (method, own) {
        (_, Some(own)) => own,
        ("patch", None) if has_body => match input {
            Some(input) => input.to_string(),
            None => return,
        },
        _ => return,
    };
    let Some(schema) = body_schemas.get(&name) else {
        return;
    };
    match method {
        "put" => {
            let mut put = schema.clone();
            if let Some(required) = put["required"].as_array_mut() {
                required.retain(|f| f != "name" && f != "username" && f != "password");
            }
            // The URL names the object; a body may repeat the same name, nothing else.
            if let Some(properties) = put["properties"].as_object_mut() {
                properties.remove("name");
                properties.remove("username");
            }
            let put_name = format!("{name}Put");
            derived.insert(put_name.clone(), put);
            op["requestBody"]["content"]["application/json"]["schema"] =
                json!({"$ref": format!("#/components/schemas/{put_name}")});
        }
        "patch" => {
            let mut patch = schema.clone();
            let required = patch["required"].as_array().cloned().unwrap_or_default();
            if let Some(object) = patch.as_object_mut() {
                object.remove("required");
            }
            // A merge patch's null removes a field: an optional one returns to its default.
            if let Some(properties) = patch["properties"].as_object_mut() {
                for (field, property) in properties.iter_mut() {
                    if !required.iter().any(|r| r == field.as_str()) {
                        allow_null(property);
                    }
                }
            }
            let patch_name = format!("{name}Patch");
            derived.insert(patch_name.clone(), patch);
            let content = json!({"schema": {"$ref": format!("#/components/schemas/{patch_name}")}});
            op["requestBody"]["content"] = json!({
                "application/json": content,
                "application/merge-patch+json": content,
            });
        }
        _ => {}
    }
}

/// Lets a property's schema take `null` too, when it is of one plain type without a fixed
/// set of values.
fn allow_null(property: &mut Value) {
    if property.get("enum").is_some() {
        return;
    }
    if let Some(Value::String(t)) = property.get("type")
        && t != "null"
    {
        let t = t.clone();
        property["type"] = json!([t, "null"]);
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK.",
        "201" => "Created.",
        "204" => "Done; no body.",
        "409" => "Conflicts with the stored state (a duplicate name, an object still referred to).",
        "429" => "Too many attempts; see `retry-after`.",
        "503" => "Not ready.",
        _ => "See the error body.",
    }
}

/// Adds the admin conventions' string rules to a request schema, in place: `name` and
/// `username` follow [`NAME_PATTERN`] (top level only), every other string without a
/// pattern is printable.
fn tighten(schema: &mut Value, top: bool) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
        for (field, property) in properties.iter_mut() {
            if top && (field == "name" || field == "username") && is_string(property) {
                property["pattern"] = json!(NAME_PATTERN);
                property["not"] = json!({"pattern": UUID_PATTERN});
            } else {
                tighten(property, false);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = object.get_mut(key) {
            tighten(inner, false);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for inner in object
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            tighten(inner, false);
        }
    }
    if is_string(&Value::Object(object.clone())) && !object.contains_key("pattern") {
        object.insert("pattern".into(), json!(PRINTABLE_PATTERN));
    }
}

fn is_string(schema: &Value) -> bool {
    match &schema["type"] {
        Value::String(t) => t == "string",
        Value::Array(types) => types.iter().any(|t| t == "string"),
        _ => false,
    }
}

/// Links from each `POST <collection>` (201) to every operation on the created object and
/// below it (`<collection>/{param}`, `<collection>/{param}/…`): the object by the id the
/// answer carries (by name for PUT, the one address that also creates), the parameters the
/// collection's path has too (`tenant` of a tenant's keys) from the create request.
fn add_links(doc: &mut Value, paths: &[String]) {
    for collection in paths {
        if doc["paths"][collection].get("post").is_none() {
            continue;
        }
        let Some(item) = paths.iter().find(|p| {
            p.strip_prefix(collection.as_str())
                .and_then(|rest| rest.strip_prefix("/{"))
                .is_some_and(|rest| rest.ends_with('}') && !rest.contains('/'))
        }) else {
            continue;
        };
        let param = item
            .rsplit_once("/{")
            .map(|(_, p)| p.trim_end_matches('}').to_string())
            .unwrap_or_default();
        let mut links = Map::new();
        let below = paths
            .iter()
            .filter(|p| *p == item || p.starts_with(&format!("{item}/")));
        for path in below {
            for method in METHODS {
                let Some(op) = doc["paths"][path].get(method) else {
                    continue;
                };
                let Some(target) = op["operationId"].as_str() else {
                    continue;
                };
                let mut parameters = Map::new();
                let mut resolvable = true;
                let path_params = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str());
                for name in path_params {
                    let value = if name != param && !collection.contains(&format!("{{{name}}}")) {
                        // Neither the created object nor its parents (`id` of a key
                        // below a tenant just created): no link.
                        resolvable = false;
                        break;
                    } else if name != param {
                        format!("$request.path.{name}")
                    } else if method == "put" {
                        let field = if collection == "/admins" {
                            "username"
                        } else {
                            "name"
                        };
                        format!("$response.body#/{field}")
                    } else {
                        "$response.body#/id".to_string()
                    };
                    parameters.insert(name.to_string(), json!(value));
                }
                if !resolvable {
                    continue;
                }
                links.insert(
                    target.to_string(),
                    json!({"operationId": target, "parameters": parameters}),
                );
            }
        }
        if let Some(created) = doc["paths"][collection]["post"]["responses"].get_mut("201") {
            created["links"] = Value::Object(links);
        }
    }
}

/// Which methods the document declares for each path template, for the 405 answer.
#[derive(Debug, Clone, Default)]
pub struct DeclaredMethods(Vec<(Vec<String>, Vec<String>)>);

impl DeclaredMethods {
    pub fn of(api: &utoipa::openapi::OpenApi) -> DeclaredMethods {
        let doc = serde_json::to_value(api).unwrap_or(Value::Null);
        let mut out = Vec::new();
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            let segments = path.split('/').map(str::to_string).collect();
            let methods = METHODS
                .iter()
                .filter(|m| ops.get(**m).is_some())
                .map(|m| m.to_uppercase())
                .collect();
            out.push((segments, methods));
        }
        DeclaredMethods(out)
    }

    /// The methods declared for the template `path` matches, if any.
    pub fn allowed(&self, path: &str) -> Option<&[String]> {
        let wanted: Vec<&str> = path.split('/').collect();
        self.0.iter().find_map(|(template, methods)| {
            let matches = template.len() == wanted.len()
                && template.iter().zip(&wanted).all(|(t, w)| {
                    (t.starts_with('{') && t.ends_with('}') && !w.is_empty()) || t == w
                });
            matches.then_some(methods.as_slice())
        })
    }
}

/// The admin listener's answer to a request no handler took: 405 with `Allow` when the path
/// is a declared one (the method is not), else 404.
pub fn unrouted(req: &HttpRequest, declared: &DeclaredMethods) -> HttpResponse {
    match declared.allowed(req.path()) {
        Some(methods) => HttpResponse::MethodNotAllowed()
            .insert_header(("Allow", methods.join(", ")))
            .json(ErrorBody {
                error: ErrorDetail {
                    code: "method_not_allowed".into(),
                    message: format!(
                        "{} is not allowed here; allowed: {}",
                        req.method(),
                        methods.join(", ")
                    ),
                    fields: None,
                },
            }),
        None => actix_web::ResponseError::error_response(&AdminError::from(Error::not_found(
            "endpoint",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_field_rules_are_stated() {
        let mut doc = json!({"components": {"schemas": {
            "AdminInput": {"type": "object", "properties": {"tenant": {"type": ["string", "null"]}}},
            "CredentialInput": {"type": "object", "properties": {}},
            "ServiceInput": {"type": "object", "properties": {"upstream_url": {"type": ["string", "null"]}}}
        }}});
        cross_field_rules(&mut doc);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["AdminInput"]["then"]["required"], json!(["tenant"]));
        assert_eq!(
            schemas["AdminInput"]["else"]["properties"]["tenant"]["type"],
            "null"
        );
        let groups = &schemas["CredentialInput"]["allOf"];
        assert_eq!(
            groups[2]["anyOf"][1]["required"],
            json!(["param_name", "param_value", "param_location"])
        );
        assert!(
            schemas["ServiceInput"]["properties"]["upstream_url"]["pattern"]
                .as_str()
                .is_some_and(|p| p.starts_with("^https?://"))
        );
    }

    #[test]
    fn templates_match_segment_by_segment() {
        let declared = DeclaredMethods(vec![
            (
                "/tenants/{tenant}".split('/').map(str::to_string).collect(),
                vec!["GET".into(), "DELETE".into()],
            ),
            (
                "/healthz".split('/').map(str::to_string).collect(),
                vec!["GET".into()],
            ),
        ]);
        assert_eq!(
            declared.allowed("/tenants/acme"),
            Some(&["GET".to_string(), "DELETE".to_string()][..])
        );
        assert_eq!(declared.allowed("/healthz"), Some(&["GET".to_string()][..]));
        assert_eq!(declared.allowed("/tenants"), None);
        assert_eq!(declared.allowed("/tenants/acme/x"), None);
        assert_eq!(declared.allowed("/tenants/"), None);
    }

    #[test]
    fn operations_get_unique_ids_errors_and_links() {
        let mut doc = json!({
            "paths": {
                "/things": {
                    "post": {"operationId": "create",
                             "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ThingInput"}}}},
                             "responses": {"201": {"description": ""}}}
                },
                "/things/{thing}": {
                    "get": {"operationId": "get_one",
                            "parameters": [{"name": "thing", "in": "path", "required": true, "schema": {"type": "string"}}],
                            "responses": {"200": {"description": ""}}},
                    "put": {"operationId": "upsert",
                            "parameters": [{"name": "thing", "in": "path", "required": true, "schema": {"type": "string"}}],
                            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ThingInput"}}}},
                            "responses": {"200": {"description": ""}}},
                    "patch": {"operationId": "update",
                            "parameters": [{"name": "thing", "in": "path", "required": true, "schema": {"type": "string"}}],
                            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                            "responses": {"200": {"description": ""}}}
                },
                "/healthz": {"get": {"operationId": "healthz", "security": [{}], "responses": {"200": {"description": ""}}}}
            },
            "components": {"schemas": {"ThingInput": {
                "type": "object", "required": ["name"], "additionalProperties": false,
                "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}}}}
        });
        complete_value(&mut doc);
        let paths = &doc["paths"];
        assert_eq!(
            paths["/things/{thing}"]["get"]["operationId"],
            "get_things_thing"
        );
        let post = &paths["/things"]["post"];
        for status in ["201", "400", "401", "403", "409", "413", "415", "422"] {
            assert!(post["responses"].get(status).is_some(), "{status}: {post}");
        }
        assert!(paths["/healthz"]["get"]["responses"].get("401").is_none());
        let links = &post["responses"]["201"]["links"];
        assert_eq!(
            links["get_things_thing"]["parameters"]["thing"],
            "$response.body#/id"
        );
        assert_eq!(
            links["put_things_thing"]["parameters"]["thing"],
            "$response.body#/name"
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ThingInput"]["properties"]["name"]["pattern"],
            NAME_PATTERN
        );
        assert_eq!(
            schemas["ThingInput"]["properties"]["tags"]["items"]["pattern"],
            TAG_PATTERN
        );
        assert_eq!(schemas["ThingInputPut"]["required"], json!([]));
        assert!(schemas["ThingInputPut"]["properties"].get("name").is_none());
        assert!(schemas["ThingInputPatch"].get("required").is_none());
    }
}
