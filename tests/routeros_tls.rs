//! The RouterOS client over TLS (`api-ssl`): verification is on, by pinned fingerprint or CA
//! file, and a wrong certificate is refused. The lab router speaks plain TCP; a small
//! TLS-terminating proxy on 127.0.0.1 stands in front of it, as a router's api-ssl service.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use routeros_api::client::Command;
use routeros_api::server::{RouterConfig, RouterLab, Version};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use wispctl::kinds::pppoe::PppoeError;
use wispctl::kinds::pppoe::client::connect;
use wispctl::kinds::pppoe::spec::Router;
use wispctl::secret::Secret;
use wispctl::tls::TlsVerify;

/// A certificate for 127.0.0.1 signed by a fresh CA: (CA PEM, leaf DER, leaf key DER).
fn ca_and_leaf() -> (String, CertificateDer<'static>, Vec<u8>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .unwrap();
    (ca_cert.pem(), leaf.der().clone(), leaf_key.serialize_der())
}

/// Terminates TLS with `cert` on a loopback port and forwards to `upstream`.
async fn tls_proxy(
    cert: CertificateDer<'static>,
    key: Vec<u8>,
    upstream: std::net::SocketAddr,
) -> std::net::SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

fn router(tls: TlsVerify) -> Router {
    Router {
        address: "127.0.0.1".into(),
        port: 8729,
        tls: Some(tls),
        username: "wispctl".into(),
        password: Secret::new("pw"),
        timeout: Duration::from_secs(5),
        deadline: wispctl::kinds::pppoe::spec::DEADLINE,
        limits: Default::default(),
        max_disconnects: None,
    }
}

#[tokio::test]
async fn tls_is_verified_by_pin_or_ca_and_refuses_a_wrong_certificate() {
    let lab = RouterLab::start(RouterConfig::new(Version::V7).with_user("wispctl", "pw"))
        .await
        .unwrap();
    let (ca_pem, leaf, key) = ca_and_leaf();
    let pin: [u8; 32] = Sha256::digest(leaf.as_ref()).into();
    let proxy = tls_proxy(leaf, key, lab.addr()).await;

    // Pinned fingerprint: the API works over TLS.
    let mut conn = connect("r", &router(TlsVerify::Fingerprint(pin)), Some(proxy))
        .await
        .unwrap();
    let reply = conn
        .call(Command::new(["/ppp/profile/print"]))
        .await
        .unwrap();
    assert!(!reply.rows.is_empty());

    // A wrong pin is refused, naming both fingerprints.
    let err = connect("r", &router(TlsVerify::Fingerprint([0; 32])), Some(proxy))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, PppoeError::Tls { ref reason, .. } if reason.contains(&hex::encode(pin))),
        "{err}"
    );

    // The CA that signed it: accepted; another CA: refused.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    connect("r", &router(TlsVerify::Ca(ca_file.clone())), Some(proxy))
        .await
        .unwrap();
    let (other_ca, _, _) = ca_and_leaf();
    std::fs::write(&ca_file, other_ca).unwrap();
    let err = connect("r", &router(TlsVerify::Ca(ca_file)), Some(proxy))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PppoeError::Tls { .. }), "{err}");

    // Insecure (a lab only, warned about at load): connects.
    connect("r", &router(TlsVerify::Insecure), Some(proxy))
        .await
        .unwrap();

    // Plain TCP to a TLS port is not mistaken for a router: it fails cleanly, in time.
    let mut plain = router(TlsVerify::Insecure);
    plain.tls = None;
    plain.timeout = Duration::from_millis(500);
    assert!(connect("r", &plain, Some(proxy)).await.is_err());
}
