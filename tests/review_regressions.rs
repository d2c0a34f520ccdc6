//! Regressions for defects a review found in the PPPoE and UISP providers. Each test names the
//! defect it guards; each failed before its fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use routeros_api::server::{RouterConfig, RouterLab, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wispctl::engine::{Context, Engine, PlannedRun, TargetFilter};
use wispctl::kinds::uisp::twin::server::{
    HttpFault, LabDevice, LabSite, UispConfig, UispLab, UispState,
};
use wispctl::lab::LabEndpoints;
use wispctl::plan::Action;
use wispctl::plan::report::{ApplyReport, Status};
use wispctl::secret::{HashKey, SecretResolver};
use wispctl::uisp_api::Endpoint;

const TOKEN: &str = "review-token";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

struct Setup {
    tmp: tempfile::TempDir,
    key: Arc<HashKey>,
}

impl Setup {
    fn new(inventory: &str, files: &[(&str, &str)]) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("d"), "inventory.yaml", inventory);
        for (rel, text) in files {
            write(&tmp.path().join("d"), rel, text);
        }
        Setup {
            tmp,
            key: Arc::new(HashKey::from_bytes([5; 32])),
        }
    }

    fn engine(&self, routers: &[(&str, SocketAddr)], uisp: Option<&UispLab>) -> Engine {
        let d = wispctl::desired::load(&self.tmp.path().join("d"), &SecretResolver::new()).unwrap();
        let mut endpoints = LabEndpoints::default();
        for (n, a) in routers {
            endpoints.insert("routers", n, *a);
        }
        if let Some(u) = uisp {
            endpoints.insert(
                "uisp",
                "main",
                Endpoint {
                    api: u.url(),
                    ca_pem: u.ca_pem(),
                },
            );
        }
        let ctx = Context::new(self.key.clone(), self.tmp.path().join("state"))
            .with_endpoints(Arc::new(endpoints));
        wispctl::kinds::engine(&d, &ctx, TargetFilter::default(), 100)
    }
}

async fn apply(run: PlannedRun) -> ApplyReport {
    run.apply(&BTreeMap::new()).await
}

fn outcome<'a>(r: &'a ApplyReport, address: &str) -> &'a wispctl::plan::report::Outcome {
    r.targets
        .iter()
        .flat_map(|t| &t.outcomes)
        .find(|o| o.address == address)
        .unwrap_or_else(|| panic!("no outcome for {address}: {r:?}"))
}

// ------------------------------------------------------------------------------------------
// UISP
// ------------------------------------------------------------------------------------------

const UISP_INVENTORY: &str = "allow_inline_secrets: true\nuisp:\n  main:\n    url: https://uisp.lab.invalid\n    token: { inline: review-token }\n";

fn site(id: &str, name: &str, parent: Option<&str>, note: Option<&str>) -> LabSite {
    LabSite {
        note: note.map(Into::into),
        ..LabSite::new(id, name, "site", parent)
    }
}

fn device(id: &str, mac: &str, name: Option<&str>, site: Option<&str>) -> LabDevice {
    LabDevice::new(id, mac, name, None, site)
}

const S1: &str = "51000000-0000-4000-8000-000000000001";
const S2: &str = "51000000-0000-4000-8000-000000000002";
const D1: &str = "d1000000-0000-4000-8000-000000000001";

/// The token went along on a redirect to plain http.
#[test]
fn the_uisp_token_never_follows_a_redirect() {
    rt().block_on(async {
        // A plain listener that counts any connection.
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = plain.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                let _ = s.shutdown().await;
            }
        });
        // An HTTPS server that redirects everything there.
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let ca_pem = cert.cert.pem();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https_addr = https.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = https.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 302 Found\r\nLocation: http://{plain_addr}/nms/api/v2.1/devices\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let s = Setup::new(UISP_INVENTORY, &[]);
        let d = wispctl::desired::load(&s.tmp.path().join("d"), &SecretResolver::new()).unwrap();
        let client = wispctl::uisp_api::UispClient::new(
            &d.kind::<wispctl::kinds::uisp::Kind>().targets["main"],
            Some(&Endpoint {
                api: format!("https://{https_addr}/nms/api/v2.1"),
                ca_pem,
            }),
        )
        .unwrap();
        let err = client.devices().await.unwrap_err().to_string();
        assert!(err.contains("redirect"), "{err}");
        assert!(!err.contains(TOKEN));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the client followed the redirect to plain http");
    });
}

/// A failed parent creation detached the child site to the top level, reported as applied.
#[test]
fn a_child_is_never_detached_when_its_new_parent_fails() {
    rt().block_on(async {
        let state = UispState {
            sites: vec![site(S1, "Norte", None, None), site(S2, "Torre", Some(S1), None)],
            devices: vec![],
        };
        let lab = UispLab::start(UispConfig::with_token(TOKEN), state).await.unwrap();
        lab.set_faults(vec![HttpFault::new("POST", "/sites", 500)]);
        let s = Setup::new(
            UISP_INVENTORY,
            &[("uisp/main.yaml", "uisp: main\nsites:\n  - name: Zona Norte\n  - name: Torre\n    parent: Zona Norte\n")],
        );
        let report = apply(s.engine(&[], Some(&lab)).plan().await).await;
        assert_eq!(outcome(&report, r#"uisp.main.site["Zona Norte"]"#).status, Status::Failed);
        let torre = outcome(&report, r#"uisp.main.site["Torre"]"#);
        assert_eq!(torre.status, Status::Failed, "{torre:?}");
        let now = lab.state().sites.into_iter().find(|x| x.name == "Torre").unwrap();
        assert_eq!(now.parent_id.as_deref(), Some(S1), "Torre was moved");
    });
}

/// The ghost check before the delete used the plan's snapshot, not a fresh read.
#[test]
fn a_ghost_that_gains_a_name_after_the_plan_is_not_deleted() {
    rt().block_on(async {
        let state = UispState {
            sites: vec![],
            devices: vec![device(D1, "F0:9F:C2:00:00:01", None, None)],
        };
        let lab = UispLab::start(UispConfig::with_token(TOKEN), state)
            .await
            .unwrap();
        let s = Setup::new(
            UISP_INVENTORY,
            &[("uisp/main.yaml", "uisp: main\nghosts: delete\n")],
        );
        let run = s.engine(&[], Some(&lab)).plan().await;
        assert_eq!(run.plan.summary.destroy, 1);
        let mut st = lab.state();
        st.devices[0].name = Some("Real antenna".into());
        lab.set_state(st);
        lab.reset_calls();
        let report = apply(run).await;
        let o = outcome(&report, r#"uisp.main.device["F0:9F:C2:00:00:01"]"#);
        assert_eq!(o.status, Status::Failed, "{o:?}");
        assert_eq!(lab.state().devices.len(), 1, "the device was deleted");
        assert!(
            !lab.calls().iter().any(|c| c.path.ends_with("/refresh")),
            "its key was reset"
        );
    });
}

/// A tagged parent was planned for deletion above a tagged child that had to stay.
#[test]
fn a_tagged_parent_above_a_kept_child_is_not_pruned() {
    rt().block_on(async {
        let state = UispState {
            sites: vec![
                site(S1, "Zona Vieja", None, Some("[wispctl]")),
                site(S2, "Torre Vieja", Some(S1), Some("[wispctl]")),
            ],
            devices: vec![device(D1, "28:70:4E:00:00:01", Some("Antena"), Some(S2))],
        };
        let lab = UispLab::start(UispConfig::with_token(TOKEN), state)
            .await
            .unwrap();
        let s = Setup::new(
            UISP_INVENTORY,
            &[(
                "uisp/main.yaml",
                "uisp: main\nprune: owned\nsites:\n  - name: Otra\n",
            )],
        );
        let run = s.engine(&[], Some(&lab)).plan().await;
        let deletes: Vec<&str> = run.plan.targets[0]
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .map(|c| c.address.as_str())
            .collect();
        assert!(deletes.is_empty(), "{deletes:?}");
    });
}

/// A 403 on a write was blamed on a CRM key.
#[test]
fn a_forbidden_write_is_not_blamed_on_a_crm_key() {
    rt().block_on(async {
        let state = UispState {
            sites: vec![site(S1, "Centro", None, None)],
            devices: vec![device(D1, "28:70:4E:00:00:01", Some("Antena"), None)],
        };
        let lab = UispLab::start(UispConfig::with_token(TOKEN), state)
            .await
            .unwrap();
        lab.set_faults(vec![HttpFault::new("POST", "/devices/authorize", 403)]);
        let s = Setup::new(
            UISP_INVENTORY,
            &[(
                "uisp/main.yaml",
                "uisp: main\ndevices:\n  - mac: 28:70:4E:00:00:01\n    site: Centro\n",
            )],
        );
        let report = apply(s.engine(&[], Some(&lab)).plan().await).await;
        let why = outcome(&report, r#"uisp.main.device["28:70:4E:00:00:01"]"#)
            .reason
            .clone()
            .unwrap();
        assert!(why.contains("permission") && !why.contains("CRM"), "{why}");
    });
}

/// Both imports could write YAML that failed to load, stopping every later run.
#[test]
fn imports_never_write_yaml_that_fails_to_load() {
    use wispctl::kinds::pppoe::observe::LiveSecret;
    use wispctl::uisp_api::client::LiveDevice;
    let secret = LiveSecret {
        id: "*1".into(),
        fields: [
            ("name", "a"),
            ("comment", "line one\nline two"),
            ("profile", "default"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        not_utf8: Default::default(),
    };
    let p = wispctl::kinds::pppoe::import::render("r", &[secret], true);
    assert!(
        p.warnings.iter().any(|w| w.contains("left out")),
        "{:?}",
        p.warnings
    );
    let sites = vec![];
    let d = LiveDevice {
        id: D1.into(),
        mac: "28:70:4E:00:00:01".into(),
        name: Some("evil\n  - mac: \"28:70:4E:A8:17:02\"".into()),
        ip: None,
        authorized: true,
        site_id: None,
        status: "active".into(),
        failed_decryption: false,
    };
    let u = wispctl::kinds::uisp::import::render("main", &sites, &[d]);
    let s = Setup::new(
        "allow_inline_secrets: true\nrouters:\n  r: { address: 127.0.0.1, username: u, password: { inline: p } }\nuisp:\n  main: { url: https://uisp.lab.invalid, token: { inline: t } }\n",
        &[("pppoe/r.yaml", &p.yaml), ("uisp/main.yaml", &u.yaml)],
    );
    wispctl::desired::load(&s.tmp.path().join("d"), &SecretResolver::new())
        .expect("imported YAML loads");
}

// ------------------------------------------------------------------------------------------
// PPPoE
// ------------------------------------------------------------------------------------------

/// Between the client and a lab router: forwards everything until it sees a `/ppp/secret/set`,
/// then lets the router run it but drops its answer and closes, as a dying link would.
async fn reply_eating_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let cut = Arc::new(AtomicBool::new(false));
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let c2 = cut.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || c2.load(Ordering::SeqCst) {
                        break;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = cw.shutdown().await;
            });
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let is_set = buf[..n].windows(15).any(|w| w == b"/ppp/secret/set");
                    if is_set {
                        cut.store(true, Ordering::SeqCst);
                    }
                    if sw.write_all(&buf[..n]).await.is_err() || is_set {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A suspension whose `set` reply was lost never kicked the session: the next run saw nothing
/// to change.
#[test]
fn a_kick_is_owed_even_when_the_write_reply_is_lost() {
    rt().block_on(async {
        let lab = RouterLab::start(RouterConfig {
            profiles: vec!["10M".into(), "Morosos".into()],
            ..RouterConfig::new(Version::V7).with_user("u", "p")
        })
        .await
        .unwrap();
        let mut maria = routeros_api::server::Secret::new("maria", "pw");
        maria.profile = "10M".into();
        maria.comment = "[wispctl]".into();
        lab.set_secrets(vec![maria]);
        lab.add_active("maria", "10.10.1.46");
        let proxy = reply_eating_proxy(lab.addr()).await;
        let s = Setup::new(
            "allow_inline_secrets: true\nrouters:\n  r: { address: 127.0.0.1, username: u, password: { inline: p }, timeout_secs: 2 }\n",
            &[("pppoe/r.yaml", "router: r\nsecrets:\n  - name: maria\n    profile: Morosos\n")],
        );
        let report = apply(s.engine(&[("r", proxy)], None).plan().await).await;
        assert!(!report.succeeded());
        assert_eq!(lab.secret("maria").unwrap().profile, "Morosos", "the set did not reach the router");
        assert_eq!(lab.active().len(), 1, "kicked despite the dead link?");
        // The re-run goes straight to the router: nothing differs, but the kick is owed.
        let run = s.engine(&[("r", lab.addr())], None).plan().await;
        assert_eq!(run.plan.summary.change, 1, "the owed kick is not planned");
        let report = apply(run).await;
        assert!(report.succeeded(), "{report:?}");
        assert!(lab.active().is_empty(), "the session is still up on the old profile");
        assert!(s.engine(&[("r", lab.addr())], None).plan().await.plan.summary.is_empty());
    });
}
