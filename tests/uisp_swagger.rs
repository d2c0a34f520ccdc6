//! The lab UISP against the UISP NMS Swagger 2.0 description
//! (`tests/fixtures/uisp/nms-api-v2.1.swagger.json`, a copy of UISP's own; a missing file fails
//! the test). For every operation the lab serves, real answers (successes and errors)
//! are validated against the operation's response schema, with `$ref: #/definitions/...`
//! resolved in the file; the request bodies the lab accepts for `POST /sites`,
//! `PUT /sites/{id}`, `POST /devices/authorize`, `POST /devices/{id}/authorize` and
//! `POST /devices/bulkdelete` are validated against the operation's body parameter; and bodies
//! the Swagger refuses must be refused by the lab (400).
//!
//! Swagger 2.0 schemas are JSON Schema draft 4 plus extensions. Validated as draft 4, formats
//! (`date-time`) included; the `x-*` keywords (`x-format`, `x-constraint`, `x-alternatives`)
//! are not JSON Schema and are ignored, except `x-nullable: true`, which is read as "or
//! `null`" (`anyOf: [schema, {type: null}]`). The Swagger marks only three properties so
//! (none of them in what the lab serves): it was exported from Joi schemas and lost their
//! `.allow(null)`. The properties that UISP sends as `null` and the lab does too are listed in
//! [`NULLABLE`], each with its reason, and get the same `x-nullable` treatment; every other
//! property must match the Swagger as written.
//!
//! Not checked by the schemas: `x-format` (GUIDs, IP addresses) and unknown keys (the Swagger
//! has no `additionalProperties: false`; the lab refuses unknown body keys, as Joi does).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use wispctl::kinds::uisp::twin::server::{
    HttpFault, LabDevice, LabSite, UispConfig, UispLab, UispState,
};

/// Relative to `CARGO_MANIFEST_DIR`.
const SWAGGER: &str = "tests/fixtures/uisp/nms-api-v2.1.swagger.json";

/// Properties the Swagger does not mark `x-nullable` but UISP (and the lab) send as `null`:
/// (definition, property, why).
const NULLABLE: &[(&str, &str, &str)] = &[
    (
        "DeviceIdentification",
        "site",
        "null for unauthorized devices, as UISP answers",
    ),
    (
        "DeviceIdentification",
        "name",
        "null for a device without a name (a ghost)",
    ),
    (
        "DeviceIdentification",
        "hostname",
        "null for a device without a name (a ghost)",
    ),
    (
        "DeviceIdentification",
        "displayName",
        "UNMS: the alias, else the name; null for a ghost",
    ),
    (
        "DeviceStatusOverview",
        "ipAddress",
        "null for a device without an IP (UNMS: getOr(null, identification.ipAddress))",
    ),
    (
        "DeviceSchema",
        "ipAddress",
        "null for a device without an IP (a ghost)",
    ),
    (
        "site",
        "parent",
        "a device's site at the top level has no parent",
    ),
    ("DeviceMeta", "alias", "UNMS's default metadata: null"),
    ("DeviceMeta", "note", "UNMS's default metadata: null"),
    ("DeviceMeta", "customIpAddress", "null when not set"),
    (
        "DeviceMeta",
        "restartTimestamp",
        "UNMS's default metadata: null (never restarted from UISP)",
    ),
    (
        "SiteIdentificationDetail",
        "parent",
        "a top-level site has no parent",
    ),
    (
        "SiteIdentificationDetail 1",
        "parent",
        "PUT sends back what GET gave (null: top level)",
    ),
    ("SiteDescription", "address", "null when not set"),
    ("SiteDescription", "note", "null when not set"),
    (
        "SiteDescription 1",
        "address",
        "PUT sends back what GET gave (null: not set)",
    ),
    (
        "SiteDescription 1",
        "note",
        "PUT sends back what GET gave (null: not set)",
    ),
];

/// What the lab serves: (method, Swagger path).
const LAB_OPERATIONS: &[(&str, &str)] = &[
    ("get", "/devices"),
    ("get", "/devices/{id}"),
    ("get", "/devices/mac/{mac}"),
    ("delete", "/devices/{id}"),
    ("post", "/devices/authorize"),
    ("post", "/devices/{id}/authorize"),
    ("post", "/devices/{id}/unassign"),
    ("post", "/devices/{id}/refresh"),
    ("post", "/devices/bulkdelete"),
    ("get", "/sites"),
    ("post", "/sites"),
    ("get", "/sites/{id}"),
    ("put", "/sites/{id}"),
    ("delete", "/sites/{id}"),
    ("get", "/nms/connection"),
];

const TOKEN: &str = "swagger-test-token";
const TOWER: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const CASA: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae8";
const EMPTY: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae9";
const JUAN: &str = "9b2f1d3e-5a4c-4b6d-8e7f-0a1b2c3d4e01";
const AP: &str = "9b2f1d3e-5a4c-4b6d-8e7f-0a1b2c3d4e02";
const OLD: &str = "9b2f1d3e-5a4c-4b6d-8e7f-0a1b2c3d4e03";
const GHOST: &str = "9b2f1d3e-5a4c-4b6d-8e7f-0a1b2c3d4e04";
const NOBODY: &str = "9b2f1d3e-5a4c-4b6d-8e7f-0a1b2c3d4eff";

fn device(id: &str, mac: &str, name: Option<&str>, site: Option<&str>, status: &str) -> LabDevice {
    LabDevice {
        status: status.into(),
        ..LabDevice::new(id, mac, name, None, site)
    }
}

/// A site with an address, an endpoint under it (with a note) holding an active and a
/// disconnected antenna, an empty endpoint, the tower's AP, and an unauthorized ghost.
fn seed() -> UispState {
    let site = LabSite::new;
    UispState {
        sites: vec![
            LabSite {
                address: Some("Cerro Grande, Tomatlan".into()),
                ..site(TOWER, "Torre Norte", "site", None)
            },
            LabSite {
                note: Some("casa azul".into()),
                ..site(CASA, "Tomatlan, Juan Perez", "endpoint", Some(TOWER))
            },
            site(EMPTY, "Tomatlan, Casa Vacia", "endpoint", Some(TOWER)),
        ],
        devices: vec![
            LabDevice {
                ip: Some("10.10.1.139/24".into()),
                ..device(
                    JUAN,
                    "FC:EC:DA:10:00:01",
                    Some("juan-lb5"),
                    Some(CASA),
                    "active",
                )
            },
            LabDevice {
                ip: Some("10.10.1.2".into()),
                model: "LBE-5AC-Gen2".into(),
                model_name: "LiteBeam 5AC Gen2".into(),
                ..device(
                    AP,
                    "FC:EC:DA:10:00:02",
                    Some("ap-norte"),
                    Some(TOWER),
                    "active",
                )
            },
            device(
                OLD,
                "FC:EC:DA:10:00:03",
                Some("juan-old"),
                Some(CASA),
                "disconnected",
            ),
            LabDevice {
                failed_message_decryption: true,
                ..device(GHOST, "FC:EC:DA:10:00:04", None, None, "unauthorized")
            },
        ],
    }
}

/// The Swagger, with `x-nullable` (and [`NULLABLE`]) turned into `anyOf [.., null]`.
fn load_swagger() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SWAGGER);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the UISP Swagger file {} cannot be read ({e}): it belongs to the repository",
            path.display()
        )
    });
    let mut swagger: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the UISP Swagger file {} is not JSON: {e}", path.display()));
    assert_eq!(swagger["swagger"], "2.0");
    assert_eq!(swagger["basePath"], "/nms/api/v2.1");
    for (def, prop, why) in NULLABLE {
        let p = swagger["definitions"][def]["properties"]
            .get_mut(*prop)
            .unwrap_or_else(|| panic!("NULLABLE: the Swagger has no {def}.{prop} ({why})"));
        p["x-nullable"] = json!(true);
    }
    nullable_to_any_of(&mut swagger);
    swagger
}

fn nullable_to_any_of(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                nullable_to_any_of(child);
            }
            if map.remove("x-nullable") == Some(json!(true)) {
                let schema = Value::Object(std::mem::take(map));
                map.insert("anyOf".into(), json!([schema, { "type": "null" }]));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_any_of),
        _ => {}
    }
}

/// Validates instances against schemas of the Swagger and collects the failures.
struct Checker {
    swagger: Value,
    failures: Vec<String>,
    /// Statuses the lab answered that the operation does not declare.
    undeclared: BTreeSet<String>,
    /// (method, path) answered 200 and validated.
    covered: BTreeSet<(String, String)>,
    checked: usize,
    /// Compiled validators by schema text (compiling one takes longer than validating).
    compiled: RefCell<HashMap<String, Rc<jsonschema::Validator>>>,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            swagger: load_swagger(),
            failures: Vec::new(),
            undeclared: BTreeSet::new(),
            covered: BTreeSet::new(),
            checked: 0,
            compiled: RefCell::default(),
        }
    }

    fn operation(&self, method: &str, template: &str) -> &Value {
        let op = &self.swagger["paths"][template][method];
        assert!(
            op.is_object(),
            "the Swagger has no operation {method} {template}"
        );
        op
    }

    /// The errors of `instance` against `schema` (resolved in the Swagger), as text.
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let validator = self
            .compiled
            .borrow_mut()
            .entry(schema.to_string())
            .or_insert_with(|| {
                let root = json!({
                    "definitions": self.swagger["definitions"],
                    "x-alt-definitions": self.swagger["x-alt-definitions"],
                    "allOf": [schema],
                });
                let validator = jsonschema::draft4::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| panic!("the schema {schema} does not compile: {e}"));
                Rc::new(validator)
            })
            .clone();
        validator
            .iter_errors(instance)
            .map(|e| {
                let pointer = e.instance_path().to_string();
                format!(
                    "at JSON pointer {:?}: {e} (schema {})",
                    if pointer.is_empty() { "/" } else { &pointer },
                    e.schema_path()
                )
            })
            .collect()
    }

    fn check(&mut self, what: &str, schema: &Value, instance: &Value) {
        self.checked += 1;
        for e in self.errors(schema, instance) {
            self.failures.push(format!("{what}: {e}"));
        }
    }

    /// The response of `method path` (an instance of `template`) against its schema.
    fn response(&mut self, method: &str, template: &str, path: &str, status: u16, body: &Value) {
        let what = format!("{} {path} -> {status}", method.to_uppercase());
        let declared =
            self.operation(method, template)["responses"][status.to_string()]["schema"].clone();
        let schema = if declared.is_object() {
            declared
        } else if status >= 400 {
            self.undeclared
                .insert(format!("{} {template} -> {status}", method.to_uppercase()));
            json!({ "$ref": "#/definitions/Error" })
        } else {
            self.failures.push(format!(
                "{what}: the Swagger declares no {status} for this operation"
            ));
            return;
        };
        self.check(&what, &schema, body);
        if status == 200 {
            self.covered.insert((method.into(), template.into()));
        }
    }

    /// The body parameter's schema of an operation.
    fn body_schema(&self, method: &str, template: &str) -> Value {
        self.operation(method, template)["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["in"] == "body"))
            .map(|p| p["schema"].clone())
            .unwrap_or_else(|| panic!("{method} {template} takes no body in the Swagger"))
    }

    /// A request body the lab accepted, against the operation's body schema.
    fn request(&mut self, method: &str, template: &str, body: &Value) {
        let schema = self.body_schema(method, template);
        let what = format!("request body of {} {template}", method.to_uppercase());
        self.check(&what, &schema, body);
    }

    /// Whether the Swagger refuses `body` for the operation.
    fn refuses(&self, method: &str, template: &str, body: &Value) -> bool {
        !self
            .errors(&self.body_schema(method, template), body)
            .is_empty()
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    fn new(lab: &UispLab) -> Client {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(lab.ca_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Client {
            http,
            url: lab.url(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut rb = self.http.request(m, format!("{}{path}", self.url));
        if let Some(t) = token {
            rb = rb.header("x-auth-token", t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
        (status, body)
    }
}

/// Sends a request, checks its status and validates the answer; returns the answer.
async fn call(
    c: &Client,
    k: &mut Checker,
    (method, template): (&str, &str),
    path: &str,
    body: Option<Value>,
    want: u16,
) -> Value {
    let (status, answer) = c.send(method, path, body.as_ref(), Some(TOKEN)).await;
    assert_eq!(status, want, "{} {path}: {answer}", method.to_uppercase());
    k.response(method, template, path, status, &answer);
    if status == 200
        && let Some(b) = &body
    {
        k.request(method, template, b);
    }
    answer
}

#[tokio::test]
async fn the_lab_answers_as_the_swagger_describes() {
    let mut k = Checker::new();
    let mut lab = UispLab::start(
        UispConfig {
            crm_keys: vec!["crm-key".into()],
            ..UispConfig::with_token(TOKEN)
        },
        seed(),
    )
    .await
    .unwrap();
    let c = Client::new(&lab);
    let k = &mut k;

    // Devices: the list and its filters, one device, by MAC.
    let op = ("get", "/devices");
    let list = call(&c, k, op, "/devices", None, 200).await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    let ghost = &list[3];
    assert!(ghost["identification"]["site"].is_null());
    assert!(ghost["ipAddress"].is_null());
    assert_eq!(list[0]["ipAddress"], "10.10.1.139/24");
    assert_eq!(list[0]["identification"]["site"]["parent"]["id"], TOWER);
    call(&c, k, op, &format!("/devices?siteId={CASA}"), None, 200).await;
    call(&c, k, op, "/devices?authorized=false", None, 200).await;
    call(&c, k, op, "/devices?type=airMax&role=station", None, 200).await;
    call(&c, k, op, "/devices?withInterfaces=true", None, 200).await;
    call(&c, k, op, "/devices?authorized=perhaps", None, 400).await;
    let op = ("get", "/devices/{id}");
    for id in [JUAN, AP, OLD, GHOST] {
        call(&c, k, op, &format!("/devices/{id}"), None, 200).await;
    }
    call(&c, k, op, &format!("/devices/{NOBODY}"), None, 404).await;
    call(&c, k, op, "/devices/juan-lb5", None, 400).await;
    let op = ("get", "/devices/mac/{mac}");
    call(&c, k, op, "/devices/mac/FC:EC:DA:10:00:01", None, 200).await;
    call(&c, k, op, "/devices/mac/fcecda100002", None, 200).await;
    call(&c, k, op, "/devices/mac/FC:EC:DA:10:00:99", None, 404).await;
    call(&c, k, op, "/devices/mac/nope", None, 400).await;

    // Sites: list, filters, one.
    let op = ("get", "/sites");
    let sites = call(&c, k, op, "/sites", None, 200).await;
    assert!(sites[0]["identification"]["parent"].is_null());
    assert_eq!(sites[1]["identification"]["parent"]["id"], TOWER);
    assert_eq!(sites[1]["identification"]["status"], "disconnected");
    call(&c, k, op, "/sites?type=site", None, 200).await;
    call(&c, k, op, "/sites?type=endpoint", None, 200).await;
    call(&c, k, op, "/sites?type=galaxy", None, 400).await;
    let op = ("get", "/sites/{id}");
    for id in [TOWER, CASA, EMPTY] {
        call(&c, k, op, &format!("/sites/{id}"), None, 200).await;
    }
    call(&c, k, op, &format!("/sites/{NOBODY}"), None, 404).await;

    // Create, update, delete sites.
    let op = ("post", "/sites");
    let created = call(
        &c,
        k,
        op,
        "/sites",
        Some(json!({
            "name": "Tomatlan, Maria Lopez",
            "type": "endpoint",
            "parentSiteId": TOWER,
            "address": "Calle 5 de Mayo 12",
            "note": "antena en el techo",
            "contactName": "Maria Lopez",
            "contactPhone": "+52 322 000 0000",
            "contactEmail": "maria@example.com",
            "location": { "latitude": 19.93, "longitude": -105.25 },
            "height": 6,
            "elevation": 40,
        })),
        200,
    )
    .await;
    let new_id = created["id"].as_str().unwrap().to_owned();
    call(
        &c,
        k,
        op,
        "/sites",
        Some(json!({ "name": "Torre Sur" })),
        200,
    )
    .await;
    let op = ("put", "/sites/{id}");
    for id in [CASA, TOWER, new_id.as_str()] {
        let mut site = c
            .send("get", &format!("/sites/{id}"), None, Some(TOKEN))
            .await
            .1;
        site["description"]["note"] = json!("editado");
        call(&c, k, op, &format!("/sites/{id}"), Some(site), 200).await;
    }
    let mut moved = c
        .send("get", &format!("/sites/{EMPTY}"), None, Some(TOKEN))
        .await
        .1;
    moved["identification"]["parent"] = json!({ "id": new_id, "name": "x", "type": "endpoint" });
    call(&c, k, op, &format!("/sites/{EMPTY}"), Some(moved), 200).await;
    call(
        &c,
        k,
        op,
        &format!("/sites/{CASA}"),
        Some(json!({ "identification": { "name": "x" } })),
        400,
    )
    .await;
    let op = ("delete", "/sites/{id}");
    call(&c, k, op, &format!("/sites/{TOWER}"), None, 400).await;
    call(&c, k, op, &format!("/sites/{EMPTY}"), None, 200).await;
    call(&c, k, op, &format!("/sites/{EMPTY}"), None, 404).await;

    // Device actions.
    let op = ("post", "/devices/authorize");
    call(
        &c,
        k,
        op,
        "/devices/authorize",
        Some(json!({ "siteId": CASA, "deviceIds": [GHOST, AP] })),
        200,
    )
    .await;
    call(
        &c,
        k,
        op,
        "/devices/authorize",
        Some(json!({ "siteId": TOWER, "deviceIds": [AP] })),
        200,
    )
    .await;
    call(
        &c,
        k,
        op,
        "/devices/authorize",
        Some(json!({ "siteId": CASA, "deviceIds": [NOBODY] })),
        404,
    )
    .await;
    let op = ("post", "/devices/{id}/authorize");
    call(
        &c,
        k,
        op,
        &format!("/devices/{OLD}/authorize"),
        Some(json!({ "siteId": TOWER })),
        200,
    )
    .await;
    let op = ("post", "/devices/{id}/unassign");
    call(&c, k, op, &format!("/devices/{OLD}/unassign"), None, 200).await;
    call(&c, k, op, &format!("/devices/{NOBODY}/unassign"), None, 404).await;
    let op = ("post", "/devices/{id}/refresh");
    call(&c, k, op, &format!("/devices/{GHOST}/refresh"), None, 200).await;
    call(&c, k, op, &format!("/devices/{NOBODY}/refresh"), None, 404).await;
    let op = ("delete", "/devices/{id}");
    call(&c, k, op, &format!("/devices/{GHOST}"), None, 200).await;
    call(&c, k, op, &format!("/devices/{GHOST}"), None, 404).await;
    let op = ("post", "/devices/bulkdelete");
    call(
        &c,
        k,
        op,
        "/devices/bulkdelete",
        Some(json!({ "ids": [OLD, NOBODY] })),
        200,
    )
    .await;
    call(&c, k, op, "/devices/bulkdelete", Some(json!({})), 400).await;

    // The connection string.
    call(
        &c,
        k,
        ("get", "/nms/connection"),
        "/nms/connection",
        None,
        200,
    )
    .await;

    // The same devices list after all of it (an unassigned device again, moved ones).
    call(&c, k, ("get", "/devices"), "/devices", None, 200).await;
    call(&c, k, ("get", "/sites"), "/sites", None, 200).await;

    // Authentication failures and injected faults are Error objects too.
    for (method, template, path, token) in [
        ("get", "/devices", "/devices".to_string(), None),
        ("get", "/sites", "/sites".to_string(), Some("crm-key")),
        (
            "post",
            "/devices/authorize",
            "/devices/authorize".to_string(),
            Some("wrong"),
        ),
        (
            "get",
            "/nms/connection",
            "/nms/connection".to_string(),
            Some("wrong"),
        ),
    ] {
        let (status, answer) = c.send(method, &path, None, token).await;
        assert_eq!(status, 401);
        k.response(method, template, &path, status, &answer);
    }
    lab.set_faults(vec![
        HttpFault {
            times: Some(1),
            ..HttpFault::new("POST", "/devices/authorize", 500)
        },
        HttpFault {
            times: Some(1),
            retry_after_secs: Some(3),
            ..HttpFault::new("GET", "/devices", 429)
        },
    ]);
    let body = json!({ "siteId": CASA, "deviceIds": [JUAN] });
    call(
        &c,
        k,
        ("post", "/devices/authorize"),
        "/devices/authorize",
        Some(body),
        500,
    )
    .await;
    call(&c, k, ("get", "/devices"), "/devices", None, 429).await;

    // Every operation the lab serves was answered with 200 and validated.
    let served: BTreeSet<(String, String)> = LAB_OPERATIONS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&k.covered).collect();
    assert!(missing.is_empty(), "not covered with a 200: {missing:?}");
    lab.shutdown().await;

    eprintln!(
        "validated {} documents; statuses the lab answers that the Swagger does not declare \
         (checked against Error): {:?}",
        k.checked, k.undeclared
    );
    assert!(
        k.failures.is_empty(),
        "{} validation failure(s) against {SWAGGER}:\n{}",
        k.failures.len(),
        k.failures.join("\n")
    );
}

/// Bodies the Swagger refuses are refused by the lab with a 400 `Error` carrying `validation`;
/// bodies it accepts (and the lab's rules allow) are accepted.
#[tokio::test]
async fn the_lab_refuses_the_bodies_the_swagger_refuses() {
    let k = Checker::new();
    let lab = UispLab::start(UispConfig::with_token(TOKEN), seed())
        .await
        .unwrap();
    let c = Client::new(&lab);
    let cases: Vec<(&str, &str, String, Value)> = vec![
        ("post", "/sites", "/sites".into(), json!({ "type": "site" })),
        ("post", "/sites", "/sites".into(), json!({ "name": 12 })),
        (
            "post",
            "/sites",
            "/sites".into(),
            json!({ "name": "x", "type": "tower" }),
        ),
        (
            "post",
            "/sites",
            "/sites".into(),
            json!({ "name": "x", "parentSiteId": 7 }),
        ),
        (
            "post",
            "/sites",
            "/sites".into(),
            json!({ "name": "x", "location": { "latitude": 95, "longitude": 0 } }),
        ),
        (
            "post",
            "/sites",
            "/sites".into(),
            json!({ "name": "x", "location": { "latitude": 5 } }),
        ),
        (
            "post",
            "/sites",
            "/sites".into(),
            json!({ "name": "x", "height": "tall" }),
        ),
        (
            "post",
            "/devices/authorize",
            "/devices/authorize".into(),
            json!({ "deviceIds": [JUAN] }),
        ),
        (
            "post",
            "/devices/authorize",
            "/devices/authorize".into(),
            json!({ "siteId": CASA, "deviceIds": JUAN }),
        ),
        (
            "post",
            "/devices/authorize",
            "/devices/authorize".into(),
            json!({ "siteId": CASA, "deviceIds": [1] }),
        ),
        (
            "post",
            "/devices/authorize",
            "/devices/authorize".into(),
            json!({ "siteId": 5 }),
        ),
        (
            "post",
            "/devices/{id}/authorize",
            format!("/devices/{GHOST}/authorize"),
            json!({}),
        ),
        (
            "post",
            "/devices/bulkdelete",
            "/devices/bulkdelete".into(),
            json!({ "ids": GHOST }),
        ),
        (
            "put",
            "/sites/{id}",
            format!("/sites/{CASA}"),
            json!({ "description": {} }),
        ),
        (
            "put",
            "/sites/{id}",
            format!("/sites/{CASA}"),
            json!({
                "identification": { "id": CASA, "type": "endpoint", "status": "active" },
                "description": {},
            }),
        ),
        (
            "put",
            "/sites/{id}",
            format!("/sites/{CASA}"),
            json!({
                "identification": { "id": CASA, "name": "x", "type": "client", "status": "active" },
                "description": {},
            }),
        ),
    ];
    let before = lab.state();
    for (method, template, path, body) in &cases {
        assert!(
            k.refuses(method, template, body),
            "the Swagger accepts {body} for {method} {template}: not a refusal case"
        );
        let (status, answer) = c.send(method, path, Some(body), Some(TOKEN)).await;
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        assert_eq!(answer["statusCode"], 400);
        assert_eq!(answer["error"], "Bad Request");
        assert!(answer["message"].is_string(), "{answer}");
        assert_eq!(answer["validation"]["source"], "payload", "{answer}");
        assert!(answer["validation"]["keys"].is_array(), "{answer}");
    }
    assert_eq!(
        lab.state().sites,
        before.sites,
        "a refused body changes nothing"
    );
    assert_eq!(lab.state().devices, before.devices);

    let accepted: Vec<(&str, &str, String, Value)> = vec![
        (
            "post",
            "/sites",
            "/sites".into(),
            json!({ "name": "Solo nombre" }),
        ),
        (
            "post",
            "/devices/authorize",
            "/devices/authorize".into(),
            json!({ "siteId": CASA }),
        ),
        (
            "put",
            "/sites/{id}",
            format!("/sites/{CASA}"),
            json!({
                "identification": { "id": CASA, "name": "Tomatlan, Juan P.", "type": "endpoint", "status": "active" },
                "description": {},
            }),
        ),
    ];
    for (method, template, path, body) in &accepted {
        assert!(
            !k.refuses(method, template, body),
            "the Swagger refuses {body} for {method} {template}"
        );
        let (status, answer) = c.send(method, path, Some(body), Some(TOKEN)).await;
        assert_eq!(status, 200, "{method} {path} {body}: {answer}");
    }
}

#[test]
fn x_nullable_becomes_any_of_null() {
    let mut v = json!({
        "properties": {
            "a": { "type": "string", "x-nullable": true },
            "b": { "$ref": "#/definitions/x", "x-nullable": true },
            "c": { "type": "string" },
        }
    });
    nullable_to_any_of(&mut v);
    assert_eq!(
        v,
        json!({
            "properties": {
                "a": { "anyOf": [{ "type": "string" }, { "type": "null" }] },
                "b": { "anyOf": [{ "$ref": "#/definitions/x" }, { "type": "null" }] },
                "c": { "type": "string" },
            }
        })
    );
    // And the checker does fail where it should, with the pointer and the reason.
    let k = Checker::new();
    let schema = json!({ "$ref": "#/definitions/Model%2021" });
    let errors = k.errors(
        &schema,
        &json!({ "id": "x", "type": "router", "series": 5 }),
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("\"/type\"")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("\"/series\"")),
        "{errors:?}"
    );
    let ok = k.errors(
        &schema,
        &json!({ "id": "x", "type": "airMax", "series": "AC" }),
    );
    assert!(ok.is_empty(), "{ok:?}");
    // Not nullable unless marked or listed: a null where the Swagger says string fails.
    let errors = k.errors(
        &json!({ "$ref": "#/definitions/DeviceFirmware" }),
        &json!({ "current": null, "latest": "x", "compatible": true }),
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
}
