//! Owns the checks of the deployment files: `docker-compose.yml`, `deploy/haproxy.cfg` and
//! every manifest under `deploy/kubernetes/`. Nothing here starts Docker, kubectl or
//! HAProxy: the YAML is parsed with serde_norway (merge keys applied) and the HAProxy file
//! line by line, and both are held against what the server really reads
//! (`medify::config::known_variables()`, `Settings::from_lookup`), so that a misspelt or
//! removed setting, a probe on the wrong path, a grace period shorter than the drain or a
//! sticky balancer fails here instead of in a rollout.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use medify::config::{
    known_variables, Environment, ObjectStoreSettings, Settings, MIN_JWT_SECRET_BYTES,
};
use serde::Deserialize;
use serde_json::Value;

/// The cluster's balancer configuration, relative to the repository.
const HAPROXY_CFG: &str = "deploy/haproxy.cfg";
/// Variables `deploy/haproxy.cfg` must name a server for.
const NODE_VARIABLES: [&str; 3] = ["MEDIFY_NODE1", "MEDIFY_NODE2", "MEDIFY_NODE3"];
/// Kubernetes' default `terminationGracePeriodSeconds`.
const K8S_DEFAULT_GRACE_S: u64 = 30;
/// Docker's default `stop_grace_period`.
const DOCKER_DEFAULT_GRACE: Duration = Duration::from_secs(10);

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every document of a YAML file, `<<` merge keys applied, as JSON values; empty documents
/// (a trailing `---`) are skipped.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = serde_norway::Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", path.display()));
            serde_json::to_value(value)
                .unwrap_or_else(|e| panic!("{}: not JSON-shaped: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// A JSON scalar as the string a process would see in its environment.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A fixed JWT secret for settings checks (the real one is deployment-specific).
fn stand_in_jwt_secret() -> String {
    "x".repeat(MIN_JWT_SECRET_BYTES)
}

/// Settings parsed as the server would parse this environment; a failure names the file.
fn settings_of(what: &str, env: &BTreeMap<String, String>) -> Settings {
    Settings::from_lookup(|k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("{what}: the server would refuse this environment: {e}"))
}

fn assert_known(what: &str, names: &BTreeSet<String>) {
    assert!(!names.is_empty(), "{what}: no variables found at all");
    let known = known_variables();
    let unknown: Vec<&String> = names.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "{what} sets variables the server never reads: {unknown:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Kubernetes

/// Every document of every `.yaml`/`.yml` file under deploy/kubernetes/, with its file.
fn manifests() -> Vec<(String, Value)> {
    let dir = repo_path("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut all = Vec::new();
    for file in files {
        let name = file.display().to_string();
        for doc in yaml_documents(&file) {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].is_string(), "{name}: a document without {field}");
            }
            assert!(
                doc["metadata"]["name"].is_string(),
                "{name}: a {} without metadata.name",
                doc["kind"]
            );
            all.push((name.clone(), doc));
        }
    }
    all
}

fn of_kind<'a>(all: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    all.iter()
        .map(|(_, doc)| doc)
        .filter(|doc| doc["kind"] == kind)
        .collect()
}

fn named<'a>(all: &'a [(String, Value)], kind: &str, name: &str) -> Option<&'a Value> {
    of_kind(all, kind)
        .into_iter()
        .find(|doc| doc["metadata"]["name"] == name)
}

fn the_deployment(all: &[(String, Value)]) -> &Value {
    let deployments = of_kind(all, "Deployment");
    assert_eq!(deployments.len(), 1, "expected one Deployment");
    deployments[0]
}

/// The Deployment's `medify` container.
fn medify_container(deployment: &Value) -> &Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "medify"))
        .expect("the Deployment has a container named medify")
}

/// Where a variable of a Kubernetes container comes from.
#[derive(Debug, Clone)]
enum K8sValue {
    /// A value written out (env `value`, a ConfigMap's data).
    Literal(String),
    /// A key of a Secret; the value is the deployment's.
    Secret { name: String, key: String },
    /// A field of the pod (`fieldRef`).
    Field(String),
}

/// A ConfigMap's or Secret's keys and written-out values (Secret `stringData`; base64
/// `data` values are not decoded).
fn object_entries(object: &Value) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for field in ["data", "stringData"] {
        if let Some(map) = object[field].as_object() {
            for (k, v) in map {
                let value = if field == "data" && object["kind"] == "Secret" {
                    None
                } else {
                    v.as_str().map(str::to_owned)
                };
                out.insert(k.clone(), value);
            }
        }
    }
    out
}

/// The container's environment as Kubernetes builds it: `envFrom` first, `env` overriding.
/// Every ConfigMap or Secret referenced must be in deploy/kubernetes/ and hold the key.
fn k8s_env(container: &Value, all: &[(String, Value)]) -> BTreeMap<String, K8sValue> {
    let mut env = BTreeMap::new();
    let mut problems = Vec::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            let Some(name) = source[field]["name"].as_str() else {
                continue;
            };
            let Some(object) = named(all, kind, name) else {
                problems.push(format!(
                    "envFrom names {kind} {name}, not in deploy/kubernetes/"
                ));
                continue;
            };
            for (key, value) in object_entries(object) {
                let value = match (kind, value) {
                    ("ConfigMap", Some(v)) => K8sValue::Literal(v),
                    _ => K8sValue::Secret {
                        name: name.to_owned(),
                        key: key.clone(),
                    },
                };
                env.insert(key, value);
            }
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().expect("env[].name").to_owned();
        let from = &var["valueFrom"];
        let value = if let Some(v) = var.get("value") {
            match v.as_str() {
                Some(s) => K8sValue::Literal(s.to_owned()),
                None => {
                    problems.push(format!("{name}: env values must be strings, got {v}"));
                    continue;
                }
            }
        } else if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            K8sValue::Field(path.to_owned())
        } else if let Some((kind, r)) =
            [("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")]
                .into_iter()
                .find_map(|(kind, field)| from.get(field).map(|r| (kind, r)))
        {
            let (object, key) = (r["name"].as_str(), r["key"].as_str());
            let entries = object.and_then(|o| named(all, kind, o)).map(object_entries);
            match (object, key, entries) {
                (Some(o), Some(k), Some(e)) if e.contains_key(k) => match (kind, &e[k]) {
                    ("ConfigMap", Some(v)) => K8sValue::Literal(v.clone()),
                    _ => K8sValue::Secret {
                        name: o.to_owned(),
                        key: k.to_owned(),
                    },
                },
                _ => {
                    problems.push(format!("{name}: {kind} key {r} not in deploy/kubernetes/"));
                    continue;
                }
            }
        } else {
            problems.push(format!(
                "{name}: neither a value nor a source Medify could use"
            ));
            continue;
        };
        env.insert(name, value);
    }
    assert!(
        problems.is_empty(),
        "the medify container's environment: {problems:#?}"
    );
    env
}

/// The environment with every value made concrete: Secrets from secret.example.yaml, the
/// JWT secret and pod fields by stand-ins.
fn k8s_concrete_env(
    env: &BTreeMap<String, K8sValue>,
    all: &[(String, Value)],
) -> BTreeMap<String, String> {
    env.iter()
        .map(|(name, value)| {
            let concrete = match value {
                K8sValue::Literal(v) => v.clone(),
                K8sValue::Field(_) => "medify-6f7d9c8b5-x2k4q".to_owned(),
                K8sValue::Secret { .. } if name == "JWT_SECRET" => stand_in_jwt_secret(),
                K8sValue::Secret { name: s, key } => named(all, "Secret", s)
                    .and_then(|o| object_entries(o).remove(key).flatten())
                    .unwrap_or_else(|| panic!("{name}: Secret {s} has no written-out {key}")),
            };
            (name.clone(), concrete)
        })
        .collect()
}

#[test]
fn kubernetes_sets_only_variables_the_server_reads() {
    let all = manifests();
    let deployment = the_deployment(&all);
    let env = k8s_env(medify_container(deployment), &all);
    assert_known(
        "the Deployment's medify container",
        &env.keys().cloned().collect(),
    );
    // Every ConfigMap and Secret here feeds that container, so their keys are variables too.
    for kind in ["ConfigMap", "Secret"] {
        for object in of_kind(&all, kind) {
            let what = format!("{kind} {}", object["metadata"]["name"]);
            assert_known(&what, &object_entries(object).into_keys().collect());
        }
    }
}

#[test]
fn kubernetes_values_are_strings() {
    // A ConfigMap's values and Secret's stringData must be strings (`"30"`, not `30`), or
    // the API server refuses the object.
    let all = manifests();
    for kind in ["ConfigMap", "Secret"] {
        for object in of_kind(&all, kind) {
            for field in ["data", "stringData"] {
                for (k, v) in object[field].as_object().into_iter().flatten() {
                    assert!(v.is_string(), "{kind} {field}.{k} is not a string: {v}");
                }
            }
        }
    }
}

#[test]
fn kubernetes_environment_is_a_valid_cluster_node() {
    let all = manifests();
    let deployment = the_deployment(&all);
    let container = medify_container(deployment);
    let env = k8s_env(container, &all);

    assert!(
        matches!(env.get("MEDIFY_NODE_ID"), Some(K8sValue::Field(f)) if f == "metadata.name"),
        "MEDIFY_NODE_ID must come from the pod name (fieldRef metadata.name): {:?}",
        env.get("MEDIFY_NODE_ID")
    );
    assert!(
        matches!(env.get("MEDIFY_CLUSTER"), Some(K8sValue::Literal(v)) if v == "1"),
        "MEDIFY_CLUSTER must be \"1\": {:?}",
        env.get("MEDIFY_CLUSTER")
    );
    let settings = settings_of("the Deployment", &k8s_concrete_env(&env, &all));
    assert_eq!(settings.env, Environment::Production);
    assert!(
        settings.cluster.enabled,
        "the pods would not form a cluster"
    );
    assert!(
        matches!(settings.objects, ObjectStoreSettings::S3(_)),
        "pods share no disk: OBJECT_STORE must be an s3:// bucket, got {:?}",
        settings.objects
    );

    // The example Secret must not be usable as it is: its JWT_SECRET is refused.
    if let Some(K8sValue::Secret { name, key }) = env.get("JWT_SECRET") {
        let mut with_example = k8s_concrete_env(&env, &all);
        let example = named(&all, "Secret", name)
            .and_then(|o| object_entries(o).remove(key).flatten())
            .expect("the example Secret writes out JWT_SECRET");
        with_example.insert("JWT_SECRET".to_owned(), example);
        let refused = Settings::from_lookup(|k| with_example.get(k).cloned());
        assert!(
            refused.is_err(),
            "the example Secret's JWT_SECRET would be accepted: make it a short placeholder"
        );
    } else {
        panic!("JWT_SECRET must come from a Secret");
    }
}

/// The pod's port a probe or Service names: a number, or a container port's name.
fn resolve_port(port: &Value, container: &Value) -> Option<u64> {
    port.as_u64().or_else(|| {
        let name = port.as_str()?;
        container["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)?["containerPort"]
            .as_u64()
    })
}

/// Seconds a preStop hook sleeps: `sleep: {seconds}` or an exec of `sleep N`.
fn prestop_sleep_seconds(container: &Value) -> u64 {
    let hook = &container["lifecycle"]["preStop"];
    assert!(!hook.is_null(), "the medify container has no preStop hook");
    if let Some(seconds) = hook["sleep"]["seconds"].as_u64() {
        return seconds;
    }
    let words: Vec<&str> = strings(&hook["exec"]["command"])
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    words
        .iter()
        .position(|w| *w == "sleep" || w.ends_with("/sleep"))
        .and_then(|i| words.get(i + 1))
        .and_then(|n| n.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("the preStop hook is not a sleep of whole seconds: {hook}"))
}

#[test]
fn deployment_is_replicated_probed_and_drains_before_it_is_killed() {
    let all = manifests();
    let deployment = the_deployment(&all);
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    assert!(
        replicas >= 2,
        "replicas: {replicas}; a cluster needs at least 2"
    );

    let pod = &deployment["spec"]["template"]["spec"];
    let container = medify_container(deployment);
    let settings = settings_of(
        "the Deployment",
        &k8s_concrete_env(&k8s_env(container, &all), &all),
    );
    let port = u64::from(settings.bind.port());
    let ports: Vec<u64> = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    assert!(
        ports.contains(&port),
        "MEDIFY_BIND port {port} is not a containerPort: {ports:?}"
    );

    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe} must GET {path}");
        assert_eq!(
            resolve_port(&get["port"], container),
            Some(port),
            "{probe} must reach the port medify listens on"
        );
    }

    let sleep = prestop_sleep_seconds(container);
    assert!(
        sleep > 0,
        "a preStop sleep of 0 s does not wait for endpoints"
    );
    let drain = settings.shutdown_timeout.as_secs();
    // The node running dispatch first lets its open offers be answered (at most the offer
    // timeout and a second) before it hands over and drains.
    let handover = settings.dispatch.offer_timeout.as_secs() + 1;
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(K8S_DEFAULT_GRACE_S);
    assert!(
        grace > sleep + handover + drain,
        "terminationGracePeriodSeconds {grace} must exceed preStop sleep {sleep} + \
         the dispatch hand-over {handover} + MEDIFY_SHUTDOWN_TIMEOUT_S {drain}"
    );

    let non_root = [&pod["securityContext"], &container["securityContext"]]
        .iter()
        .any(|ctx| ctx["runAsNonRoot"] == true);
    assert!(non_root, "the pod must run as non-root (runAsNonRoot)");
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(
        container["resources"]["requests"].is_object()
            && container["resources"]["limits"]["memory"].is_string(),
        "the container needs resource requests and a memory limit"
    );
}

/// Labels of the Deployment's pods.
fn pod_labels(deployment: &Value) -> &serde_json::Map<String, Value> {
    deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("the Deployment's pod template has labels")
}

/// A label selector (`{k: v}` or `matchLabels`) selects the pods: non-empty, every label
/// equal, no `matchExpressions` (not evaluated here).
fn assert_selects(what: &str, selector: &Value, labels: &serde_json::Map<String, Value>) {
    assert!(
        selector.get("matchExpressions").is_none(),
        "{what}: matchExpressions are not checked; use matchLabels"
    );
    let wanted = selector
        .get("matchLabels")
        .unwrap_or(selector)
        .as_object()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| panic!("{what}: no selector labels"));
    for (k, v) in wanted {
        assert_eq!(
            labels.get(k),
            Some(v),
            "{what} selects {k}={v}; the pods have {labels:?}"
        );
    }
}

#[test]
fn service_and_pdb_select_the_deployments_pods() {
    let all = manifests();
    let deployment = the_deployment(&all);
    let labels = pod_labels(deployment);
    let container = medify_container(deployment);
    assert_selects("the Deployment", &deployment["spec"]["selector"], labels);

    let services = of_kind(&all, "Service");
    assert!(!services.is_empty(), "no Service");
    for service in services {
        assert_selects("the Service", &service["spec"]["selector"], labels);
        assert_ne!(
            service["spec"]["sessionAffinity"], "ClientIP",
            "nodes share all state: no session affinity"
        );
        let targets: Vec<Option<u64>> = service["spec"]["ports"]
            .as_array()
            .expect("the Service has ports")
            .iter()
            .map(|p| resolve_port(p.get("targetPort").unwrap_or(&p["port"]), container))
            .collect();
        let container_ports: Vec<Option<u64>> = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["containerPort"].as_u64())
            .collect();
        for target in targets {
            assert!(
                target.is_some() && container_ports.contains(&target),
                "a Service port targets {target:?}, not a container port {container_ports:?}"
            );
        }
    }

    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    let budgets = of_kind(&all, "PodDisruptionBudget");
    assert!(!budgets.is_empty(), "no PodDisruptionBudget");
    for pdb in budgets {
        let spec = &pdb["spec"];
        assert_selects("the PodDisruptionBudget", &spec["selector"], labels);
        let (min, max) = (spec.get("minAvailable"), spec.get("maxUnavailable"));
        assert!(
            min.is_some() != max.is_some(),
            "a PodDisruptionBudget sets exactly one of minAvailable and maxUnavailable"
        );
        if let Some(min) = min.and_then(Value::as_u64) {
            assert!(
                (1..replicas).contains(&min),
                "minAvailable {min} with {replicas} replicas blocks every drain or guards nothing"
            );
        }
        if let Some(max) = max.and_then(Value::as_u64) {
            assert!(
                (1..replicas).contains(&max),
                "maxUnavailable {max} with {replicas} replicas"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// docker compose

fn compose() -> Value {
    let mut docs = yaml_documents(&repo_path("docker-compose.yml"));
    assert_eq!(docs.len(), 1, "docker-compose.yml is one document");
    docs.remove(0)
}

fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"]
        .as_object()
        .expect("docker-compose.yml has services")
}

fn profiles(service: &Value) -> Vec<&str> {
    strings(&service["profiles"])
}

/// Services running the server: built from the Dockerfile or from a medify image.
fn is_medify(service: &Value) -> bool {
    service.get("build").is_some()
        || service["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("medify"))
}

/// A service's `environment`, as a mapping or a `KEY=VALUE` list, uninterpolated.
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = scalar(v).unwrap_or_else(|| panic!("environment {k}: not a scalar"));
                (k.clone(), v)
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (item.to_owned(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Compose's interpolation of `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`
/// and `${VAR:?message}` / `${VAR?message}`, from `shell`.
fn interpolate(raw: &str, shell: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .expect("an unclosed ${ in docker-compose.yml");
            let expr = &braced[..end];
            let split = expr.find([':', '-', '?']).unwrap_or(expr.len());
            let (name, op) = expr.split_at(split);
            let value = shell.get(name).cloned();
            // `:` treats an empty value as unset.
            let (empty_is_unset, op) = match op.strip_prefix(':') {
                Some(op) => (true, op),
                None => (false, op),
            };
            let missing = value
                .as_ref()
                .is_none_or(|v| empty_is_unset && v.is_empty());
            out.push_str(&match (missing, op.chars().next()) {
                (false, _) => value.unwrap_or_default(),
                (true, Some('-')) => op[1..].to_owned(),
                (true, Some('?')) => panic!("compose would stop: {name}: {}", &op[1..]),
                (true, _) => String::new(),
            });
            rest = &braced[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            out.push_str(&shell.get(&after[..len]).cloned().unwrap_or_default());
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// The shell compose is run from in these checks: only JWT_SECRET exported.
fn compose_shell() -> BTreeMap<&'static str, String> {
    BTreeMap::from([("JWT_SECRET", stand_in_jwt_secret())])
}

/// What a container of this service would see.
fn interpolated_env(service: &Value) -> BTreeMap<String, String> {
    let shell = compose_shell();
    compose_env(service)
        .into_iter()
        .map(|(k, v)| (k, interpolate(&v, &shell)))
        .collect()
}

/// The cluster's medify services, by name.
fn cluster_nodes(compose: &Value) -> BTreeMap<&str, &Value> {
    services(compose)
        .iter()
        .filter(|(_, s)| is_medify(s) && profiles(s).contains(&"cluster"))
        .map(|(name, s)| (name.as_str(), s))
        .collect()
}

/// A compose duration (`40s`, `1m30s`, `500ms`).
fn compose_duration(raw: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = raw.trim();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("not a duration: {raw:?}"));
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let unit = &rest[digits..digits + unit_len];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => panic!("unknown unit {unit:?} in {raw:?}"),
        };
        rest = &rest[digits + unit_len..];
    }
    total
}

/// A service's volume mounts as (source, target).
fn mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| match v {
            Value::String(short) => {
                let mut parts = short.splitn(3, ':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }
            long => Some((
                long["source"].as_str()?.to_owned(),
                long["target"].as_str()?.to_owned(),
            )),
        })
        .collect()
}

#[test]
fn compose_medify_services_set_only_variables_the_server_reads() {
    let compose = compose();
    let medify: Vec<(&String, &Value)> = services(&compose)
        .iter()
        .filter(|(_, s)| is_medify(s))
        .collect();
    assert!(
        !medify.is_empty(),
        "no medify service in docker-compose.yml"
    );
    for (name, service) in medify {
        let what = format!("compose service {name}");
        assert_known(&what, &compose_env(service).into_keys().collect());
        settings_of(&what, &interpolated_env(service));
    }
}

#[test]
fn compose_keeps_the_single_node_default() {
    let compose = compose();
    let services = services(&compose);
    for name in ["postgres", "redis", "medify"] {
        let service = services
            .get(name)
            .unwrap_or_else(|| panic!("the {name} service is gone"));
        assert!(
            profiles(service).is_empty(),
            "{name} must start with a plain `docker compose up`"
        );
    }
}

#[test]
fn compose_cluster_profile_runs_distinct_nodes_sharing_one_state() {
    let compose = compose();
    let nodes = cluster_nodes(&compose);
    assert!(
        nodes.len() >= 3,
        "cluster profile nodes: {:?}",
        nodes.keys()
    );

    let mut ids = BTreeSet::new();
    let mut shared: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut folders = BTreeSet::new();
    for (name, node) in &nodes {
        let raw = compose_env(node);
        let id = raw.get("MEDIFY_NODE_ID").filter(|id| !id.is_empty());
        let id = id.unwrap_or_else(|| panic!("{name} sets no MEDIFY_NODE_ID"));
        assert!(ids.insert(id.clone()), "MEDIFY_NODE_ID {id} is used twice");
        assert_eq!(
            raw.get("MEDIFY_CLUSTER").map(String::as_str),
            Some("1"),
            "{name}"
        );
        for key in [
            "DATABASE_URL",
            "REDIS_URL",
            "REDIS_KEY_PREFIX",
            "JWT_SECRET",
        ] {
            let value = raw.get(key).cloned().unwrap_or_default();
            shared.entry(key).or_default().insert(value);
        }

        let settings = settings_of(name, &interpolated_env(node));
        assert!(
            settings.cluster.enabled,
            "{name} would not join the cluster"
        );
        let grace = node["stop_grace_period"]
            .as_str()
            .map_or(DOCKER_DEFAULT_GRACE, compose_duration);
        let handover = settings.dispatch.offer_timeout + std::time::Duration::from_secs(1);
        assert!(
            grace > handover + settings.shutdown_timeout,
            "{name}: stop_grace_period {grace:?} must exceed the dispatch hand-over \
             ({handover:?}) + MEDIFY_SHUTDOWN_TIMEOUT_S ({:?}), or the drain is cut short",
            settings.shutdown_timeout
        );
        if let ObjectStoreSettings::Folder(folder) = &settings.objects {
            // A folder store works only if every node mounts the same volume over it.
            let over: Vec<String> = mounts(node)
                .into_iter()
                .filter(|(_, target)| folder.starts_with(target))
                .map(|(source, _)| source)
                .collect();
            assert_eq!(
                over.len(),
                1,
                "{name}: uploads in {folder:?}, not on a volume"
            );
            folders.insert((folder.clone(), over[0].clone()));
        }
    }
    for (key, values) in shared {
        assert_eq!(
            values.len(),
            1,
            "the nodes must share one {key}: {values:?}"
        );
    }
    assert!(
        folders.len() <= 1,
        "nodes keep uploads in different places: {folders:?}"
    );
}

#[test]
fn compose_haproxy_balances_the_cluster_nodes_with_deploy_cfg() {
    let compose = compose();
    let nodes = cluster_nodes(&compose);
    let (name, haproxy) = services(&compose)
        .iter()
        .find(|(_, s)| mounts(s).iter().any(|(src, _)| src.ends_with(HAPROXY_CFG)))
        .unwrap_or_else(|| panic!("no service mounts ./{HAPROXY_CFG}"));
    assert!(
        profiles(haproxy).contains(&"cluster"),
        "{name} is not in the cluster profile"
    );

    // Every ${VAR} haproxy.cfg expands is set, and the node addresses name distinct nodes
    // on the port they listen on.
    let env = compose_env(haproxy);
    for var in haproxy_variables() {
        assert!(
            env.contains_key(&var),
            "{name} does not set {var} for haproxy.cfg"
        );
    }
    let mut targets = BTreeSet::new();
    for var in NODE_VARIABLES {
        let address = env.get(var).map(String::as_str).unwrap_or_default();
        let (host, port) = address
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{var}={address:?} is not host:port"));
        let node = nodes
            .get(host)
            .unwrap_or_else(|| panic!("{var} names {host}, not a cluster node"));
        let bind = settings_of(host, &interpolated_env(node)).bind;
        assert_eq!(
            port,
            bind.port().to_string(),
            "{var}: {host} listens on {bind}"
        );
        assert!(targets.insert(host), "{host} is named twice");
    }

    let lb_port = env
        .get("MEDIFY_LB_BIND")
        .and_then(|b| b.rsplit_once(':'))
        .map(|(_, port)| port.to_owned())
        .expect("MEDIFY_LB_BIND is host:port");
    let published = haproxy["ports"].as_array().into_iter().flatten().any(|p| {
        scalar(p).is_some_and(|p| p.ends_with(&format!(":{lb_port}")))
            || scalar(&p["target"]) == Some(lb_port.clone())
    });
    assert!(published, "{name} does not publish its port {lb_port}");

    // The nodes believe HAProxy's X-Forwarded-For only if it has a fixed address they list.
    let address: IpAddr = haproxy["networks"]
        .as_object()
        .and_then(|nets| nets.values().find_map(|n| n["ipv4_address"].as_str()))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{name} needs a fixed address for TRUSTED_PROXIES"));
    for (node, service) in &nodes {
        let settings = settings_of(node, &interpolated_env(service));
        assert!(
            settings.trusted_proxies.contains(address),
            "{node}: TRUSTED_PROXIES does not include HAProxy's {address}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// HAProxy

/// One directive of haproxy.cfg: its section's header words and its own words (comments
/// dropped; quoted words keep their quotes).
struct Directive {
    section: Vec<String>,
    words: Vec<String>,
}

fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.push(c);
            }
            '#' if !quoted => break,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn haproxy_directives() -> Vec<Directive> {
    let text = read(&repo_path(HAPROXY_CFG));
    let mut section = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let words = words(line);
        if words.is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            section = words;
        } else {
            out.push(Directive {
                section: section.clone(),
                words,
            });
        }
    }
    out
}

/// The `${VAR}` names haproxy.cfg expands.
fn haproxy_variables() -> BTreeSet<String> {
    let text = read(&repo_path(HAPROXY_CFG));
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split("${").skip(1))
        .filter_map(|v| v.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

/// An HAProxy time (`1h`, `30s`, `500`: milliseconds when bare).
fn haproxy_time(raw: &str) -> Duration {
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let n: u64 = raw[..digits]
        .parse()
        .unwrap_or_else(|_| panic!("not an HAProxy time: {raw:?}"));
    match &raw[digits..] {
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        unit => panic!("unknown HAProxy unit {unit:?}"),
    }
}

#[test]
fn haproxy_balances_round_robin_without_stickiness() {
    let directives = haproxy_directives();
    let servers: Vec<&Directive> = directives
        .iter()
        .filter(|d| d.words[0] == "server")
        .collect();
    for var in NODE_VARIABLES {
        let address = format!("\"${{{var}}}\"");
        assert!(
            servers.iter().any(|s| s.words.get(2) == Some(&address)),
            "no server line with the address {address}"
        );
    }
    // The backend those servers are in.
    let backend = servers[0].section.clone();
    assert!(
        servers.iter().all(|s| s.section == backend),
        "the node servers are split over sections"
    );
    let in_backend = |first: &str| -> Vec<Vec<String>> {
        directives
            .iter()
            .filter(|d| d.section == backend && d.words[0] == first)
            .map(|d| d.words.clone())
            .collect()
    };
    assert_eq!(in_backend("balance"), vec![vec!["balance", "roundrobin"]]);
    let checks = in_backend("option");
    assert!(
        checks
            .iter()
            .any(|w| w.get(1).is_some_and(|o| o == "httpchk") && w.contains(&"/readyz".into())),
        "the backend must check nodes with `option httpchk GET /readyz`: {checks:?}"
    );
    assert!(
        in_backend("http-check")
            .iter()
            .any(|w| w[1..] == ["expect", "status", "200"]),
        "the backend must expect status 200 from /readyz"
    );

    for d in &directives {
        let first = d.words[0].as_str();
        assert!(
            first != "cookie" && !first.starts_with("stick") && first != "appsession",
            "a sticky directive: {:?}",
            d.words
        );
        if first == "server" || first == "default-server" {
            assert!(
                !d.words.iter().any(|w| w == "cookie"),
                "a server with a cookie: {:?}",
                d.words
            );
        }
        if first == "balance" {
            assert_eq!(d.words[1..], ["roundrobin"], "every balance is roundrobin");
        }
    }
}

#[test]
fn haproxy_passes_websockets_and_client_addresses() {
    let directives = haproxy_directives();
    let find = |words: &[&str]| {
        directives
            .iter()
            .find(|d| d.words.len() >= words.len() && d.words[..words.len()] == *words)
    };
    assert!(find(&["mode", "http"]).is_some(), "HTTP mode is needed");
    assert!(
        find(&["option", "forwardfor"]).is_some(),
        "without X-Forwarded-For every client is the balancer"
    );
    let tunnel = find(&["timeout", "tunnel"]).expect("no `timeout tunnel` for WebSockets");
    let tunnel = haproxy_time(tunnel.words.get(2).expect("a tunnel timeout"));
    assert!(
        tunnel >= Duration::from_secs(600),
        "timeout tunnel {tunnel:?} closes idle rider and tracking sockets too soon"
    );
    assert!(
        directives
            .iter()
            .any(|d| d.section.first().is_some_and(|s| s == "frontend")
                && d.words == ["bind", "\"${MEDIFY_LB_BIND}\""]),
        "the frontend must bind \"${{MEDIFY_LB_BIND}}\""
    );
}
